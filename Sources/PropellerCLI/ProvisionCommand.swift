import ArgumentParser
import PropellerCore
import PropellerRunCLI
import PropellerMQTT
import PropellerProvision

/// `propeller provision`: identities, broker ACL, config files and units for a deployment.
struct ProvisionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Create a locked-down deployment: identities, broker password and ACL files, configs, API token, systemd units.",
        discussion: """
        Writes into --out: mosquitto/password_file (hashed secrets) and mosquitto/acl_file (each \
        identity may publish and subscribe only where its job needs), mosquitto/propeller.conf, \
        manager.conf, proxy.conf, proplets/ID.conf and cli.conf (mode 600, read with --config), \
        systemd/*.service and deployment.conf (no secrets). It never overwrites: a directory that \
        holds a deployment is refused; `propeller provision add-proplet --out DIR` adds a proplet.
        """,
        subcommands: [ProvisionCreateCommand.self, ProvisionAddPropletCommand.self],
        defaultSubcommand: ProvisionCreateCommand.self
    )
}

struct ProvisionCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a deployment (the default of `propeller provision`).")

    @Option(help: ArgumentHelp("Directory to write the deployment into.", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("How many proplet identities to make.", valueName: "n"))
    var proplets: Int = 1

    @Option(help: ArgumentHelp("Domain id of the topics (default: a random one).", valueName: "name"))
    var domain: String?

    @Option(help: ArgumentHelp("Channel id of the topics (default: a random one).", valueName: "name"))
    var channel: String?

    @Option(help: ArgumentHelp("The broker as components reach it (several nodes of a cluster separated by commas).", valueName: "mqtt(s)://host:port[,…]"))
    var broker: String = "mqtt://127.0.0.1:1883"

    @Option(name: .customLong("manager-url"), help: ArgumentHelp("The manager's API as the CLI reaches it.", valueName: "url"))
    var managerURL: String = "http://127.0.0.1:7070"

    @Option(name: .customLong("mqtt-ca"), help: ArgumentHelp("CA certificate of the broker's TLS certificate, as installed (mqtts).", valueName: "file"))
    var mqttCA: String?

    @Option(name: .customLong("manager-ca"), help: ArgumentHelp("CA certificate of the manager's HTTPS certificate, for the CLI.", valueName: "file"))
    var managerCA: String?

    @Option(name: .customLong("manager-tls-cert"), help: ArgumentHelp("The manager's HTTPS certificate, as installed.", valueName: "file"))
    var managerTLSCert: String?

    @Option(name: .customLong("manager-tls-key"), help: ArgumentHelp("The manager's HTTPS private key, as installed.", valueName: "file"))
    var managerTLSKey: String?

    @Option(name: .customLong("config-dir"), help: ArgumentHelp("Where the config files will be when the services run (default: --out).", valueName: "dir"))
    var configDir: String?

    @Option(help: ArgumentHelp("The propeller executable the units run.", valueName: "path"))
    var binary: String = "/usr/local/bin/propeller"

    @Option(name: .customLong("broker-kind"), help: ArgumentHelp("The broker to write files for: mosquitto (password file and ACL) or nats (users with permissions, for a NATS cluster with MQTT).", valueName: "kind"))
    var brokerKind: String = "mosquitto"

    @Flag(name: .customLong("broker-admin"), help: "Let the manager add and revoke proplets on the running broker (`propeller proplet add|revoke`): mosquitto's dynamic-security plugin, or for NATS the users file that the manager rewrites and reloads.")
    var brokerAdmin = false

    @Option(name: .customLong("nats-pid-file"), help: ArgumentHelp("With --broker-kind nats --broker-admin: where nats-server writes its pid, which the manager signals to reload.", valueName: "file"))
    var natsPidFile: String?

    func validate() throws {
        if natsPidFile != nil && !(brokerAdmin && brokerKind == "nats") { throw ValidationError("--nats-pid-file goes with --broker-kind nats --broker-admin") }
        guard (0...1000).contains(proplets) else { throw ValidationError("--proplets: expected 0 to 1000") }
        _ = try MQTTConfigurationCheck.validate(broker)
        guard managerURL.hasPrefix("http://") || managerURL.hasPrefix("https://") else { throw ValidationError("--manager-url: expected http:// or https://") }
        if managerURL.hasPrefix("https://") && (managerTLSCert == nil || managerTLSKey == nil) {
            throw ValidationError("an https:// --manager-url needs --manager-tls-cert and --manager-tls-key")
        }
        if (managerTLSCert == nil) != (managerTLSKey == nil) { throw ValidationError("--manager-tls-cert and --manager-tls-key go together") }
        if mqttCA != nil && !broker.hasPrefix("mqtts://") { throw ValidationError("--mqtt-ca needs an mqtts:// --broker") }
        guard Deployment.BrokerKind(rawValue: brokerKind) != nil else { throw ValidationError("--broker-kind: expected mosquitto or nats") }
        for (name, value) in [("--domain", domain), ("--channel", channel)] {
            if let value, !(value.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } && Topics.isValidComponent(value)) {
                throw ValidationError("invalid \(name) \"\(value)\": letters, digits and -_. only")
            }
        }
    }

    func run() throws {
        let dir = absolutePath(out)
        var d = Deployment(domain: domain ?? "d-" + SecureRandom.bytes(4).hexString, channel: channel ?? "c-" + SecureRandom.bytes(4).hexString,
                           broker: broker, managerURL: managerURL, configDirectory: configDir.map(absolutePath) ?? dir)
        d.binary = binary
        d.brokerKind = Deployment.BrokerKind(rawValue: brokerKind) ?? .mosquitto
        d.brokerAdmin = brokerAdmin
        if let natsPidFile { d.natsPidFile = absolutePath(natsPidFile) }
        d.mqttCA = mqttCA.map(absolutePath)
        d.managerCA = managerCA.map(absolutePath)
        d.managerTLSCert = managerTLSCert.map(absolutePath)
        d.managerTLSKey = managerTLSKey.map(absolutePath)
        let summary = try Provisioner(directory: dir).create(d, proplets: proplets)
        print("""
        Provisioned deployment \(summary.deployment.domain)/\(summary.deployment.channel) in \(dir):
          broker:   \(d.brokerKind == .nats ? "nats/propeller-users.conf (mode 600; included by nats/propeller.conf, one node's settings to adapt)"
                                               : "mosquitto/password_file, mosquitto/acl_file, mosquitto/propeller.conf (include it; allow_anonymous false)"
                                                 + (brokerAdmin ? ", mosquitto/dynamic-security.json (chown mosquitto: the broker rewrites it)" : ""))
          manager:  manager.conf          proxy: proxy.conf          CLI: cli.conf (propeller --config \(dir)/cli.conf task list)
          proplets: \(summary.deployment.proplets.map { "proplets/\($0).conf" }.joined(separator: " "))
          units:    systemd/propeller-{manager,proxy,proplet}.service
        Install each proplet's config as \(summary.deployment.configDirectory)/proplet.conf on its machine.
        """)
    }
}

struct ProvisionAddPropletCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add-proplet", abstract: "Add one proplet identity to an existing deployment.")

    @Option(help: ArgumentHelp("The deployment's directory.", valueName: "dir"))
    var out: String

    func run() throws {
        let dir = absolutePath(out)
        let (deployment, id) = try Provisioner(directory: dir).addProplet()
        let files = deployment.brokerKind == .nats ? "nats/propeller-users.conf" : "mosquitto/password_file and mosquitto/acl_file"
        print("""
        Added proplet \(id): \(dir)/proplets/\(id).conf; its identity is in \(files).
        Reload the broker so it reads them (systemctl reload \(deployment.brokerKind.rawValue == "nats" ? "nats-server" : "mosquitto"), or kill -HUP its pid on every node).
        """)
    }
}

/// Checks a broker URL the way the daemons will parse it.
enum MQTTConfigurationCheck {
    static func validate(_ url: String) throws -> Bool {
        do {
            _ = try MQTTConfiguration(urls: url, clientID: "check")
            return true
        } catch let error as PropellerError {
            throw ValidationError(error.message)
        }
    }
}
