import Foundation
import PropellerCore

/// The broker's ACL: each identity may do only its job. Anything not granted is denied, `$SYS`
/// included. One set of grants, written for mosquitto (`acl_file`) or NATS (user permissions).
public enum ACL {
    /// What one identity may read (subscribe to) and write (publish on), as MQTT topic filters.
    public struct Grant: Sendable, Equatable {
        public var user: String
        public var comment: String
        public var read: [String]
        public var write: [String]
    }

    /// The manager reads every proplet's reports and writes each proplet's commands; the proxy
    /// reads registry requests, answers each proplet and publishes blob chunks.
    public static func services(_ d: Deployment) -> [Grant] {
        let t = d.topics
        // With dynamic security, the manager also drives the plugin (proplets added through the API).
        let admin = d.brokerAdmin && d.brokerKind == .mosquitto
        return [
            Grant(user: Deployment.managerUser, comment: "The manager reads every proplet's reports and writes each proplet's start/stop/ack"
                    + (admin ? "; it adds and revokes proplets in the dynamic-security plugin." : "."),
                  read: Topics.Report.allCases.map { t.allReports($0) } + (admin ? ["$CONTROL/dynamic-security/v1/response"] : []),
                  write: Topics.managerCommands.map { "\(t.base)/control/proplet/+/\($0)" } + (admin ? ["$CONTROL/dynamic-security/v1"] : [])),
            Grant(user: Deployment.proxyUser, comment: "The proxy reads registry requests and answers each proplet; it publishes blob chunks.",
                  read: [t.allRegistryRequests], write: ["\(t.base)/registry/responses/+", t.allBlobs]),
        ]
    }

    /// One proplet: it writes only its own reports and registry requests, reads only its own
    /// inbox, its own registry answers and blob chunks.
    public static func proplet(_ t: Topics, id: String) -> Grant {
        Grant(user: id, comment: "Proplet \(id).",
              read: [t.propletInbox(id), t.registryResponses(id), t.allBlobs],
              write: Topics.Report.allCases.filter { $0 != .logs }.map { t.report($0, from: id) } + ["\(t.base)/control/manager/\(id)/logs/+", t.registryRequests(from: id)])
    }

    public static func text(_ d: Deployment) -> String {
        var text = """
            # Broker ACL for Propeller deployment \(d.domain)/\(d.channel), written by `propeller provision`.
            # Each identity may publish and subscribe only where its job needs; everything else is denied.


            """
        for g in services(d) { text += mosquittoBlock(g) }
        for id in d.proplets { text += propletBlock(d.topics, id: id) }
        return text
    }

    public static func propletBlock(_ t: Topics, id: String) -> String { mosquittoBlock(proplet(t, id: id)) }

    static func mosquittoBlock(_ g: Grant) -> String {
        (["# \(g.comment)", "user \(g.user)"] + g.read.map { "topic read \($0)" } + g.write.map { "topic write \($0)" }).joined(separator: "\n") + "\n\n"
    }
}

/// The same grants as NATS users (`authorization { users = [...] }`), for a NATS cluster with
/// MQTT: a topic filter becomes a subject (`/` → `.`, `+` → `*`, `#` → `>`), and every user may
/// also subscribe to `$MQTT.sub.>`, the subjects on which NATS delivers a QoS 1 session's
/// messages to it (an MQTT client cannot subscribe to them itself: tested). Passwords are in the
/// file as such (NATS would take bcrypt hashes; none is made here), so it is mode 600.
public enum NATSUsers {
    public static func subject(_ filter: String) -> String {
        filter.split(separator: "/", omittingEmptySubsequences: false).map { level in
            level == "+" ? "*" : level == "#" ? ">" : String(level)
        }.joined(separator: ".")
    }

    /// One user on one line (so that `add-proplet` can insert one).
    public static func line(_ g: ACL.Grant, password: String) -> String {
        func list(_ items: [String]) -> String { "[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        return "    {user: \"\(g.user)\", password: \"\(password)\", permissions: {publish: {allow: \(list(g.write.map(subject)))}, "
            + "subscribe: {allow: \(list(g.read.map(subject) + ["$MQTT.sub.>"]))}}}"
    }

    public static func text(_ d: Deployment, secrets: [String: String]) -> String {
        let grants = ACL.services(d) + d.proplets.map { ACL.proplet(d.topics, id: $0) }
        return """
            # NATS users of Propeller deployment \(d.domain)/\(d.channel), written by `propeller provision`.
            # Holds every identity's password: keep it mode 600, readable by nats-server only.
            # Each identity may publish and subscribe only where its job needs; everything else is denied.
            authorization {
              users = [

            """ + grants.map { line($0, password: secrets[$0.user] ?? "") }.joined(separator: "\n") + "\n  ]\n}\n"
    }

    /// `text` with one more user, before the list's end.
    public static func adding(_ g: ACL.Grant, password: String, to text: String) throws -> String {
        guard let end = text.range(of: "\n  ]\n", options: .backwards) else {
            throw PropellerError(.invalidArgument, "the NATS users file does not end its users list as provisioned")
        }
        return String(text[..<end.lowerBound]) + "\n" + line(g, password: password) + String(text[end.lowerBound...])
    }

    /// `text` without user `user`'s line (unchanged when it has none).
    public static func removing(user: String, from text: String) -> String {
        let marker = "{user: \"\(user)\","
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix(marker) }.joined(separator: "\n")
    }
}

/// The components' config files (`key = value`, read by `--config`).
enum ConfigText {
    static func header(_ what: String, _ d: Deployment) -> [String] {
        ["# \(what) of Propeller deployment \(d.domain)/\(d.channel), written by `propeller provision`.",
         "# Holds a secret: keep it mode 600. Keys are the command's long options; flags given on the command line win."]
    }

    static func broker(_ d: Deployment, user: String, secret: String) -> [String] {
        var lines = ["mqtt = \(d.broker)"]
        if let ca = d.mqttCA { lines.append("mqtt-ca = \(ca)") }
        lines += ["mqtt-username = \(user)", "mqtt-password = \(secret)", "domain = \(d.domain)", "channel = \(d.channel)"]
        return lines
    }

    static func manager(_ d: Deployment, secret: String, apiTokenHash: String) -> String {
        var lines = header("The manager", d) + broker(d, user: Deployment.managerUser, secret: secret)
        lines += ["http = \(listenAddress(d.managerURL))", "data-dir = /var/lib/propeller-manager", "api-token-sha256 = cli:\(apiTokenHash)"]
        if d.brokerAdmin {
            switch d.brokerKind {
            case .mosquitto: lines.append("broker-admin = dynsec")
            case .nats: lines += ["broker-admin = nats", "nats-users-file = \(d.configDirectory)/\(Provisioner.File.natsUsers)", "nats-pid-file = \(d.natsPidFile)"]
            }
        }
        if let cert = d.managerTLSCert, let key = d.managerTLSKey { lines += ["tls-cert = \(cert)", "tls-key = \(key)"] }
        return lines.joined(separator: "\n") + "\n"
    }

    static func proxy(_ d: Deployment, secret: String) -> String {
        let lines = header("The image proxy", d) + broker(d, user: Deployment.proxyUser, secret: secret)
            + ["http = 127.0.0.1:7071", "data-dir = /var/lib/propeller-proxy"]
        return lines.joined(separator: "\n") + "\n"
    }

    static func proplet(_ d: Deployment, id: String, secret: String) -> String {
        let lines = header("Proplet \(id)", d) + ["id = \(id)"] + broker(d, user: id, secret: secret) + ["data-dir = /var/lib/propeller"]
        return lines.joined(separator: "\n") + "\n"
    }

    static func cli(_ d: Deployment, token: String) -> String {
        var lines = header("The CLI's access to the manager", d) + ["manager = \(d.managerURL)"]
        if let ca = d.managerCA { lines.append("manager-ca = \(ca)") }
        lines.append("api-token = \(token)")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Where the manager listens for `url`: the same host when it is loopback, else every
    /// interface, on the URL's port.
    static func listenAddress(_ url: String) -> String {
        var rest = Substring(url)
        let https = rest.hasPrefix("https://")
        if let r = rest.range(of: "://") { rest = rest[r.upperBound...] }
        rest = rest.prefix { $0 != "/" }
        var host = rest
        var port = https ? "443" : "7070"
        if rest.hasPrefix("[") {
            host = rest.dropFirst().prefix { $0 != "]" }
            if let r = rest.range(of: "]:") { port = String(rest[r.upperBound...]) }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            port = String(rest[rest.index(after: colon)...])
        }
        let loopback = host == "localhost" || host == "::1" || host.hasPrefix("127.")
        return (loopback ? (host == "::1" ? "[::1]" : String(host == "localhost" ? "127.0.0.1" : host)) : "0.0.0.0") + ":" + port
    }
}

/// systemd units: the manager and proxy as a dynamic unprivileged user with the usual
/// hardening, their config passed as a credential (root-owned file, readable by the service
/// only); the proplet as root with cgroup delegation.
enum Units {
    static let hardening = """
        NoNewPrivileges=yes
        ProtectSystem=strict
        ProtectHome=yes
        PrivateTmp=yes
        PrivateDevices=yes
        ProtectKernelTunables=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectControlGroups=yes
        ProtectClock=yes
        ProtectHostname=yes
        ProtectProc=invisible
        RestrictNamespaces=yes
        RestrictRealtime=yes
        RestrictSUIDSGID=yes
        LockPersonality=yes
        MemoryDenyWriteExecute=yes
        RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
        SystemCallArchitectures=native
        SystemCallFilter=@system-service
        CapabilityBoundingSet=
        AmbientCapabilities=
        UMask=0077
        """

    static func unprivileged(_ d: Deployment, name: String, description: String, config: String, state: String, tls: Bool = false) -> String {
        // Root-owned secrets reach the dynamic user as credentials; flags after --config win.
        let credentials = tls ? "\nLoadCredential=tls.pem:\(d.managerTLSCert ?? "")\nLoadCredential=tls.key:\(d.managerTLSKey ?? "")" : ""
        let tlsFlags = tls ? " --tls-cert ${CREDENTIALS_DIRECTORY}/tls.pem --tls-key ${CREDENTIALS_DIRECTORY}/tls.key" : ""
        return """
        [Unit]
        Description=\(description)
        Wants=network-online.target
        After=network-online.target mosquitto.service

        [Service]
        Type=simple
        DynamicUser=yes
        StateDirectory=\(state)
        LoadCredential=\(config):\(d.configDirectory)/\(config)\(credentials)
        ExecStart=\(d.binary) \(name) --config ${CREDENTIALS_DIRECTORY}/\(config)\(tlsFlags)
        Restart=on-failure
        RestartSec=2
        LimitNOFILE=65536
        \(hardening)

        [Install]
        WantedBy=multi-user.target

        """
    }

    static func manager(_ d: Deployment) -> String {
        unprivileged(d, name: "manager", description: "Propeller manager (REST API, scheduler, task store)", config: "manager.conf", state: "propeller-manager",
                     tls: d.managerTLSCert != nil && d.managerTLSKey != nil)
    }

    static func proxy(_ d: Deployment) -> String {
        unprivileged(d, name: "proxy", description: "Propeller image proxy (registry pulls, chunked distribution)", config: "proxy.conf", state: "propeller-proxy")
    }

    /// Root: it makes namespaces, mounts and cgroups. Delegate=yes hands it its cgroup subtree;
    /// KillMode=mixed lets it drain its tasks on SIGTERM before systemd kills what is left.
    static func proplet(_ d: Deployment) -> String {
        """
        [Unit]
        Description=Propeller proplet (runs tasks in containers)
        Wants=network-online.target
        After=network-online.target

        [Service]
        Type=simple
        User=root
        ExecStart=\(d.binary) proplet --config \(d.configDirectory)/proplet.conf
        Delegate=yes
        KillMode=mixed
        TimeoutStopSec=45
        Restart=on-failure
        RestartSec=2
        StateDirectory=propeller
        StateDirectoryMode=0700
        LimitNOFILE=1048576
        UMask=0077

        [Install]
        WantedBy=multi-user.target

        """
    }
}

/// `deployment.conf`: what `add-proplet` needs to extend the deployment (no secrets).
enum StateFile {
    static func text(_ d: Deployment) -> String {
        var lines = ["# Propeller deployment, written by `propeller provision` (no secrets here).",
                     "domain = \(d.domain)", "channel = \(d.channel)", "broker = \(d.broker)", "manager-url = \(d.managerURL)",
                     "config-dir = \(d.configDirectory)", "binary = \(d.binary)", "broker-kind = \(d.brokerKind.rawValue)"]
        if let v = d.mqttCA { lines.append("mqtt-ca = \(v)") }
        if let v = d.managerCA { lines.append("manager-ca = \(v)") }
        if let v = d.managerTLSCert { lines.append("manager-tls-cert = \(v)") }
        if let v = d.managerTLSKey { lines.append("manager-tls-key = \(v)") }
        lines += d.proplets.map { "proplet = \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }

    static func parse(_ text: String, path: String) throws -> Deployment {
        var values: [String: String] = [:]
        var proplets: [String] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else { throw PropellerError(.invalidArgument, "\(path) line \(n + 1): expected KEY = VALUE") }
            let key = String(line[..<eq]).trimmingWhitespace()
            let value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            if key == "proplet" {
                guard Topics.isValidComponent(value) else { throw PropellerError(.invalidArgument, "\(path) line \(n + 1): invalid proplet id") }
                proplets.append(value)
            } else {
                values[key] = value
            }
        }
        func required(_ key: String) throws -> String {
            guard let v = values[key], !v.isEmpty else { throw PropellerError(.invalidArgument, "\(path): missing \(key)") }
            return v
        }
        var d = Deployment(domain: try required("domain"), channel: try required("channel"), broker: try required("broker"),
                           managerURL: try required("manager-url"), configDirectory: try required("config-dir"))
        d.binary = values["binary"] ?? d.binary
        if let kind = values["broker-kind"] {
            guard let k = Deployment.BrokerKind(rawValue: kind) else { throw PropellerError(.invalidArgument, "\(path): broker-kind must be mosquitto or nats") }
            d.brokerKind = k
        }
        d.mqttCA = values["mqtt-ca"]
        d.managerCA = values["manager-ca"]
        d.managerTLSCert = values["manager-tls-cert"]
        d.managerTLSKey = values["manager-tls-key"]
        d.proplets = proplets
        return d
    }
}
