#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// What `propeller provision` sets up: one domain and channel, an identity and secret for the
/// manager, the proxy and each proplet, the broker's password and ACL files, one config file
/// per component, an API token for the CLI and systemd units (the job SuperMQ does upstream).
public struct Deployment: Sendable, Equatable {
    public var domain: String
    public var channel: String
    /// The broker as the components reach it: `mqtt://` or `mqtts://HOST:PORT`.
    public var broker: String
    /// The manager's API as the CLI reaches it: `http://` or `https://HOST:PORT`.
    public var managerURL: String
    /// CA certificate that signs the broker's certificate (mqtts), as installed.
    public var mqttCA: String?
    /// CA certificate that signs the manager's HTTPS certificate, for the CLI.
    public var managerCA: String?
    /// The manager's HTTPS certificate and key, as installed.
    public var managerTLSCert: String?
    public var managerTLSKey: String?
    /// Where the config files are when the services run (what the units name).
    public var configDirectory: String
    /// The `propeller` executable the units run.
    public var binary = "/usr/local/bin/propeller"
    /// Proplet ids, which are also their broker user names.
    public var proplets: [String] = []
    /// The broker whose files are written: mosquitto's password file and ACL, or NATS users.
    public var brokerKind = BrokerKind.mosquitto
    /// Whether the manager changes the broker's users while it runs (`propeller proplet add|revoke`):
    /// mosquitto's dynamic-security plugin, or the NATS users file reloaded by signal.
    public var brokerAdmin = false
    /// Where the NATS servers write their pid (the manager signals them to reload).
    public var natsPidFile = "/run/nats-server/propeller.pid"

    public enum BrokerKind: String, Sendable, CaseIterable {
        case mosquitto, nats
    }

    public init(domain: String, channel: String, broker: String, managerURL: String, configDirectory: String) {
        self.domain = domain
        self.channel = channel
        self.broker = broker
        self.managerURL = managerURL
        self.configDirectory = configDirectory
    }

    public static let managerUser = "propeller-manager"
    public static let proxyUser = "propeller-proxy"

    public var topics: Topics { Topics(domain: domain, channel: channel) }
}

/// Writes and extends a provisioned deployment in a directory. Files with secrets are mode 600
/// and created exclusively: nothing that exists is ever overwritten.
public struct Provisioner {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// The files of a deployment, relative to its directory.
    public enum File {
        public static let state = "deployment.conf"
        public static let passwordFile = "mosquitto/password_file"
        public static let aclFile = "mosquitto/acl_file"
        public static let mosquittoConf = "mosquitto/propeller.conf"
        public static let dynamicSecurity = "mosquitto/dynamic-security.json"
        public static let natsUsers = "nats/propeller-users.conf"
        public static let natsConf = "nats/propeller.conf"
        public static let manager = "manager.conf"
        public static let proxy = "proxy.conf"
        public static let cli = "cli.conf"
        public static func proplet(_ id: String) -> String { "proplets/\(id).conf" }
        public static let units = ["systemd/propeller-manager.service", "systemd/propeller-proxy.service", "systemd/propeller-proplet.service"]
    }

    /// What `create` made: the secrets only as files, the CLI token's id.
    public struct Summary: Sendable {
        public var deployment: Deployment
        public var files: [String]
    }

    /// Creates a new deployment with `proplets` proplets. Refuses a directory that already
    /// holds one, before writing anything.
    public func create(_ base: Deployment, proplets count: Int) throws -> Summary {
        var deployment = base
        // systemd refuses paths like /tmp//x (LoadCredential= "not valid"): normalise them all.
        deployment.configDirectory = Self.normalize(deployment.configDirectory)
        deployment.binary = Self.normalize(deployment.binary)
        for keyPath in [\Deployment.mqttCA, \.managerCA, \.managerTLSCert, \.managerTLSKey] {
            deployment[keyPath: keyPath] = deployment[keyPath: keyPath].map(Self.normalize)
        }
        for component in [deployment.domain, deployment.channel] where !Topics.isValidComponent(component) {
            throw PropellerError(.invalidArgument, "invalid domain or channel \"\(component)\": letters, digits and -_. only")
        }
        let existing = [File.state, File.passwordFile, File.aclFile, File.natsUsers, File.manager, File.proxy, File.cli] + File.units
        if let found = existing.first(where: { exists(path($0)) }) {
            throw PropellerError(.invalidArgument, "\(path(found)) exists: \(directory) already holds a deployment; nothing was changed (add a proplet with `propeller provision add-proplet --out \(directory)`)")
        }
        deployment.proplets = (0..<count).map { _ in Self.newPropletID() }
        let managerSecret = SecureRandom.token()
        let proxySecret = SecureRandom.token()
        let propletSecrets = deployment.proplets.map { _ in SecureRandom.token() }
        let apiToken = "ptk_" + SecureRandom.bytes(32).hexString

        var written: [String] = []
        func write(_ file: String, _ text: String, mode: mode_t) throws {
            try writeExclusive(path(file), text, mode: mode)
            written.append(file)
        }
        switch deployment.brokerKind {
        case .mosquitto:
            try makeDirectories(["mosquitto", "proplets", "systemd"])
            var passwords = [try MosquittoPassword.entry(username: Deployment.managerUser, password: managerSecret),
                             try MosquittoPassword.entry(username: Deployment.proxyUser, password: proxySecret)]
            for (id, secret) in zip(deployment.proplets, propletSecrets) { passwords.append(try MosquittoPassword.entry(username: id, password: secret)) }
            try write(File.passwordFile, passwords.joined(separator: "\n") + "\n", mode: 0o640)
            try write(File.aclFile, ACL.text(deployment), mode: 0o644)
            try write(File.mosquittoConf, Self.mosquittoConf(deployment, directory: directory), mode: 0o644)
            if deployment.brokerAdmin { try write(File.dynamicSecurity, Self.dynamicSecurityConfig, mode: 0o600) }
        case .nats:
            try makeDirectories(["nats", "proplets", "systemd"])
            var secrets = [Deployment.managerUser: managerSecret, Deployment.proxyUser: proxySecret]
            for (id, secret) in zip(deployment.proplets, propletSecrets) { secrets[id] = secret }
            try write(File.natsUsers, NATSUsers.text(deployment, secrets: secrets), mode: 0o600)
            try write(File.natsConf, Self.natsConf(deployment), mode: 0o644)
        }
        try write(File.manager, ConfigText.manager(deployment, secret: managerSecret, apiTokenHash: APITokenHash.of(apiToken)), mode: 0o600)
        try write(File.proxy, ConfigText.proxy(deployment, secret: proxySecret), mode: 0o600)
        for (id, secret) in zip(deployment.proplets, propletSecrets) {
            try write(File.proplet(id), ConfigText.proplet(deployment, id: id, secret: secret), mode: 0o600)
        }
        try write(File.cli, ConfigText.cli(deployment, token: apiToken), mode: 0o600)
        for (file, text) in zip(File.units, [Units.manager(deployment), Units.proxy(deployment), Units.proplet(deployment)]) {
            try write(file, text, mode: 0o644)
        }
        try write(File.state, StateFile.text(deployment), mode: 0o644)
        return Summary(deployment: deployment, files: written)
    }

    /// Adds one proplet to the deployment in the directory: its identity in the password file,
    /// its block in the ACL, its config file. The broker must reload its files (SIGHUP).
    public func addProplet() throws -> (deployment: Deployment, id: String) {
        var deployment = try load()
        let id = Self.newPropletID()
        let secret = SecureRandom.token()
        let configFile = File.proplet(id)
        guard !exists(path(configFile)) else { throw PropellerError(.internalError, "\(path(configFile)) exists") }
        deployment.proplets.append(id)
        // Config first (exclusive), then the broker's files, then the state: a crash in between
        // leaves an unused identity, never a proplet the broker would refuse without a trace.
        try writeExclusive(path(configFile), ConfigText.proplet(deployment, id: id, secret: secret), mode: 0o600)
        switch deployment.brokerKind {
        case .mosquitto:
            try append(path(File.passwordFile), try MosquittoPassword.entry(username: id, password: secret) + "\n")
            try append(path(File.aclFile), ACL.propletBlock(deployment.topics, id: id))
        case .nats:
            guard let users = readText(path(File.natsUsers)) else { throw PropellerError(.notFound, "\(path(File.natsUsers)): no NATS users file") }
            try replace(path(File.natsUsers), try NATSUsers.adding(ACL.proplet(deployment.topics, id: id), password: secret, to: users))
        }
        try replace(path(File.state), StateFile.text(deployment))
        return (deployment, id)
    }

    /// The deployment described by the directory's state file.
    public func load() throws -> Deployment {
        let file = path(File.state)
        guard let text = readText(file) else {
            throw PropellerError(.notFound, "\(file): no deployment here (run `propeller provision --out \(directory)` first)")
        }
        return try StateFile.parse(text, path: file)
    }

    /// `/a//b/./c/` → `/a/b/c`.
    public static func normalize(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { $0 != "." }
        return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
    }

    /// `proplet-` and 12 hex digits: unique, safe in topics, user names and file names.
    public static func newPropletID() -> String { "proplet-" + SecureRandom.bytes(6).hexString }

    /// One node of a NATS cluster with MQTT for the deployment: a starting point to adapt (names,
    /// addresses, routes), with the provisioned users included.
    static func natsConf(_ d: Deployment) -> String {
        """
        # nats-server settings for Propeller deployment \(d.domain)/\(d.channel), written by `propeller provision`.
        # One node of three: give each its own server_name and routes to the other two.
        server_name: propeller-1
        listen: 127.0.0.1:4222
        \(d.brokerAdmin ? "# The manager signals this process to reload the users it changes (propeller proplet add|revoke).\npid_file: \(d.natsPidFile)\n" : "")        # A blob chunk (512 KiB by default) and an actor message (up to --actor-message-limit) fit.
        max_payload: 8MB
        jetstream { store_dir: /var/lib/nats }
        # cluster { name: propeller, listen: 0.0.0.0:6222, routes: [nats-route://node-2:6222, nats-route://node-3:6222] }
        mqtt {
          listen: 0.0.0.0:1883
          # tls { cert_file: /etc/nats/broker.pem, key_file: /etc/nats/broker.key }
        }
        # NATS reads an include relative to this file's directory: keep the two files together.
        include ./propeller-users.conf

        """
    }

    static func mosquittoConf(_ d: Deployment, directory: String) -> String {
        """
        # mosquitto settings for Propeller deployment \(d.domain)/\(d.channel), written by `propeller provision`.
        # Include it from mosquitto.conf (include_dir) or copy these lines; paths are as provisioned.
        per_listener_settings false
        allow_anonymous false
        password_file \(d.configDirectory)/\(File.passwordFile)
        acl_file \(d.configDirectory)/\(File.aclFile)
        # Chunks are paced by the proxy; a finite queue would drop messages silently.
        max_queued_messages 0
        # Nothing larger than this is accepted from any client (a blob chunk is 512 KiB by default,
        # an actor message at most the manager's --actor-message-limit): raise it with them.
        message_size_limit 8388608
        # A session whose client has not come back in an hour is dropped with what it queued (the
        # blob subscriptions of a proplet killed in the middle of a pull would otherwise collect
        # every later distribution of those blobs, forever).
        persistent_client_expiration 1h
        set_tcp_nodelay true
        \(d.brokerAdmin ? Self.dynamicSecurityLines(d) : "")# Each listener (mosquitto 2.0 reads the next line per listener: keep it after every
        # `listener` line). A client's id is its user name, so no identity can connect under
        # another's client id and push it off (firing its Last Will: a live proplet declared dead).
        # listener 8883
        use_username_as_clientid true
        # cafile /etc/mosquitto/certs/ca.pem
        # certfile /etc/mosquitto/certs/broker.pem
        # keyfile /etc/mosquitto/certs/broker.key
        # tls_version tlsv1.2

        """
    }

    /// The plugin's starting configuration: no clients, roles or groups (proplets added through
    /// the API come here; the manager and proxy stay in the password file), everything denied
    /// that a role does not allow.
    static let dynamicSecurityConfig = """
        {
          "defaultACLAccess": {"publishClientSend": false, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
          "clients": [], "groups": [], "roles": []
        }

        """

    /// Debian's plugin, wherever this machine's architecture keeps it.
    static var dynamicSecurityPlugin: String {
        let candidates = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf", "/usr/lib"].map { $0 + "/mosquitto_dynamic_security.so" }
        return candidates.first { access($0, R_OK) == 0 } ?? candidates[0]
    }

    static func dynamicSecurityLines(_ d: Deployment) -> String {
        """
        # Proplet identities added and revoked through the manager's API (`propeller proplet add|revoke`)
        # live in the dynamic-security plugin; mosquitto rewrites its file, so the mosquitto user owns it
        # (chown mosquitto \(d.configDirectory)/\(File.dynamicSecurity)).
        plugin \(dynamicSecurityPlugin)
        plugin_opt_config_file \(d.configDirectory)/\(File.dynamicSecurity)

        """
    }

    // MARK: files

    func path(_ file: String) -> String { directory + "/" + file }

    func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    func makeDirectories(_ names: [String]) throws {
        var current = ""
        for part in directory.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw Self.error("create directory \(current)") }
        }
        for name in names where mkdir(path(name), 0o755) != 0 && errno != EEXIST { throw Self.error("create directory \(path(name))") }
    }

    func writeExclusive(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw Self.error("create \(path)") }
        defer { close(fd) }
        fchmod(fd, mode)  // the umask must not loosen or tighten what the file needs
        try writeAll(fd, text, path: path)
        guard fsync(fd) == 0 else { throw Self.error("sync \(path)") }
    }

    func append(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw Self.error("open \(path)") }
        defer { close(fd) }
        try writeAll(fd, text, path: path)
        guard fsync(fd) == 0 else { throw Self.error("sync \(path)") }
    }

    /// Writes a new version next to `path` and renames it over, keeping the mode.
    func replace(_ path: String, _ text: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Self.error("stat \(path)") }
        let temp = path + ".new"
        unlink(temp)
        try writeExclusive(temp, text, mode: st.st_mode & 0o777)
        guard rename(temp, path) == 0 else { throw Self.error("rename \(temp)") }
    }

    func writeAll(_ fd: Int32, _ text: String, path: String) throws {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Self.error("write \(path)") }
            done += n
        }
    }

    func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func error(_ what: String) -> PropellerError {
        PropellerError(.systemCall, "provision: \(what): \(String(cString: strerror(errno)))")
    }
}

/// SHA-256 of an API token, as the manager's `api-token-sha256` takes it.
enum APITokenHash {
    static func of(_ token: String) -> String { "sha256:" + SHA256.hash(Array(token.utf8)).hexString }
}
