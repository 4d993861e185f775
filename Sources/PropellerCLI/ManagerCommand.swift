import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PropellerCore
import PropellerRunCLI
import PropellerManager
import PropellerPostgres

/// `propeller manager`: REST API, scheduler, store and the MQTT control plane.
struct ManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manager",
        abstract: "Run the manager: REST API, scheduler, task store and MQTT control plane.",
        discussion: """
        Tasks, their history, results and logs, and proplets are kept in DATA_DIR/manager.db \
        (SQLite, WAL); a restarted manager resumes where it stopped. Every API route but /health \
        needs a bearer token: one whose SHA-256 is given with --api-token-sha256 (what \
        `propeller provision` writes into the manager's config), one made with `propeller token \
        create`, or the one in --token-file / PROPELLER_API_TOKEN. With --tls-cert and --tls-key the \
        API is served over HTTPS.

        With --store postgres://…, several managers share one PostgreSQL database: one leads \
        (it holds a lease in the database, under a fencing epoch every write checks), the others \
        forward API requests to it and take over when it goes away. `propeller manager status` \
        lists them.
        """,
        subcommands: [ManagerStatusCommand.self]
    )

    @OptionGroup var daemon: DaemonOptions
    @OptionGroup var tracing: TracingOptions

    @Option(help: ArgumentHelp("Address of the REST API (env MANAGER_HTTP_PORT sets the port).", valueName: "host:port"))
    var http: String?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Where the manager keeps its database (env PROPELLER_DATA_DIR).", valueName: "dir"))
    var dataDir: String = Environment.current["PROPELLER_DATA_DIR"] ?? "/var/lib/propeller"

    @Option(help: ArgumentHelp("Where the manager keeps its state: sqlite (the default: manager.db in --data-dir) or postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require], which several managers share; the password from the URL or env PGPASSWORD (env MANAGER_STORE).", valueName: "url"))
    var store: String = Environment.current["MANAGER_STORE"] ?? "sqlite"

    @Option(name: .customLong("manager-id"), help: ArgumentHelp("This manager's name among those that share a PostgreSQL store (env MANAGER_ID; default HOSTNAME-PORT).", valueName: "id"))
    var managerID: String?

    @Option(name: .customLong("advertise"), help: ArgumentHelp("The URL other managers forward API requests to while this one leads (env MANAGER_ADVERTISE; default from --http).", valueName: "url"))
    var advertise: String?

    @Option(name: .customLong("lease"), help: ArgumentHelp("How long the leader's lease lasts without renewal; renewed every third of it. A follower takes over within about this long after the leader dies (env MANAGER_LEASE, default 3s).", valueName: "duration"))
    var lease: String?

    @Option(name: .customLong("peer-ca"), help: ArgumentHelp("Certificate authorities (PEM) to trust when a follower forwards to the leader's https address (default: the system's roots).", valueName: "file"))
    var peerCA: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the API bearer token (mode 600); else env PROPELLER_API_TOKEN.", valueName: "file"))
    var tokenFile: String?

    @Option(name: .customLong("api-token-sha256"), help: ArgumentHelp("An accepted API token, as [NAME:]sha256:HEX of the token (repeatable; `propeller token hash` prints it).", valueName: "hash"))
    var apiTokenSHA256: [String] = []

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("Serve the API over HTTPS with this PEM certificate chain (with --tls-key).", valueName: "file"))
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("Private key of --tls-cert (PEM, mode 600).", valueName: "file"))
    var tlsKey: String?

    @Flag(name: .customLong("insecure-no-auth"), help: "Serve the API without authentication (a trusted loopback setup only).")
    var insecureNoAuth = false

    @Option(help: ArgumentHelp("Placement policy: binpack (fill the fullest proplet that fits), spread (the emptiest) or round-robin.", valueName: "policy"))
    var scheduler: String = "binpack"

    @Option(name: .customLong("liveliness-interval"), help: ArgumentHelp("Proplets' heartbeat interval; 3 missed mean disconnected (env PROPLET_LIVELINESS_INTERVAL, default 5s).", valueName: "duration"))
    var livelinessInterval: String?

    @Option(name: .customLong("disconnect-grace"), help: ArgumentHelp("How long a disconnected proplet's tasks stay unknown (still running, results accepted) before they are failed or rescheduled (env MANAGER_DISCONNECT_GRACE, default 3 heartbeat intervals).", valueName: "duration"))
    var disconnectGrace: String?

    @Option(name: .customLong("default-memory"), help: ArgumentHelp("Memory reserved and enforced for a task that does not ask (default 256M).", valueName: "size"))
    var defaultMemory: String = "256M"

    @Option(name: .customLong("default-pids"), help: ArgumentHelp("Processes reserved and enforced (pids.max) for a task that does not ask (default 1024).", valueName: "n"))
    var defaultPids: UInt64 = 1024

    @Option(name: .customLong("secrets-key-file"), help: ArgumentHelp("The 32-byte key (raw or 64 hex digits, mode 0600) that seals secrets in the store (env MANAGER_SECRETS_KEY_FILE; default: secrets.key in --data-dir, made on first start with the SQLite store). Managers that share a PostgreSQL store must be given the same file.", valueName: "file"))
    var secretsKeyFile: String?

    @Option(name: .customLong("actor-message-limit"), help: ArgumentHelp("Largest actor message body accepted (default 1M).", valueName: "size"))
    var actorMessageLimit: String = "1M"

    @Option(name: .customLong("actor-result-limit"), help: ArgumentHelp("Results kept per actor execution (default 256K).", valueName: "size"))
    var actorResultLimit: String = "256K"

    @Option(name: .customLong("worker-idle-ttl"), help: ArgumentHelp("An actor worker idle this long is retired, down to the actor's min_workers (default 5m).", valueName: "duration"))
    var workerIdleTTL: String = "5m"

    @Option(name: .customLong("actor-sync-timeout"), help: ArgumentHelp("Longest a synchronous actor message (?sync=true) may wait (default 300s).", valueName: "duration"))
    var actorSyncTimeout: String = "300s"

    @Option(name: .customLong("audit-retention"), help: ArgumentHelp("Remove audit entries older than this (default: keep them all); each removal is recorded in the store first.", valueName: "duration"))
    var auditRetention: String?

    @Option(name: .customLong("token-retention"), help: ArgumentHelp("Forget API tokens this long after they were revoked or expired (default 7d; a configured token's record stays).", valueName: "duration"))
    var tokenRetention: String = "7d"

    @Option(name: .customLong("broker-admin"), help: ArgumentHelp("Let `propeller proplet add|revoke` change the broker's users while it runs: dynsec (mosquitto's dynamic-security plugin, over this manager's connection) or nats (the users file of --nats-users-file, reloaded by SIGHUP to the servers of --nats-pid-file).", valueName: "kind"))
    var brokerAdmin: String?

    @Option(name: .customLong("nats-users-file"), help: ArgumentHelp("With --broker-admin nats: the users file every NATS server includes (the one `propeller provision --broker-kind nats` wrote); the manager rewrites it.", valueName: "file"))
    var natsUsersFile: String?

    @Option(name: .customLong("nats-pid-file"), help: ArgumentHelp("With --broker-admin nats: a NATS server's pid file (repeatable, one per server that reads --nats-users-file); each gets SIGHUP after a change.", valueName: "file"))
    var natsPidFile: [String] = []

    @Option(name: .customLong("proplet-broker"), help: ArgumentHelp("The broker URL written into the config of a proplet added by `propeller proplet add` (default: this manager's --mqtt).", valueName: "url[,url…]"))
    var propletBroker: String?

    @Option(name: .customLong("proplet-broker-ca"), help: ArgumentHelp("The CA file path written into the config of a proplet added by `propeller proplet add` (default: this manager's --mqtt-ca).", valueName: "file"))
    var propletBrokerCA: String?

    func validate() throws {
        switch brokerAdmin {
        case nil:
            if natsUsersFile != nil || !natsPidFile.isEmpty { throw ValidationError("--nats-users-file and --nats-pid-file go with --broker-admin nats") }
        case "dynsec":
            if natsUsersFile != nil || !natsPidFile.isEmpty { throw ValidationError("--nats-users-file and --nats-pid-file go with --broker-admin nats, not dynsec") }
        case "nats":
            if natsUsersFile == nil || natsPidFile.isEmpty { throw ValidationError("--broker-admin nats needs --nats-users-file and at least one --nats-pid-file") }
        case let other?:
            throw ValidationError("invalid --broker-admin \"\(other)\": expected dynsec or nats")
        }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if SchedulingPolicy(rawValue: scheduler) == nil { throw ValidationError("invalid --scheduler \"\(scheduler)\": expected binpack, spread or round-robin") }
    }

    func run() async throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "propeller.manager")
        var token = Environment.current["PROPELLER_API_TOKEN"]
        if let tokenFile { token = try readSecretFile(absolutePath(tokenFile), what: "token file") }
        if token?.isEmpty ?? true { token = nil }
        var configured: [(name: String, sha256: String)] = []
        for value in apiTokenSHA256 {
            let name = value.range(of: ":sha256:").map { String(value[..<$0.lowerBound]) } ?? "configured"
            let hash = value.range(of: ":sha256:").map { "sha256:" + value[$0.upperBound...] } ?? value
            do { _ = try APITokens.parseHash(hash, what: "--api-token-sha256") } catch { throw ValidationError("invalid --api-token-sha256 \"\(value)\": expected [NAME:]sha256:HEX") }
            configured.append((name, hash))
        }
        if let token { configured.append(("token-file", "sha256:" + APITokens.hash(token))) }
        if configured.isEmpty && !insecureNoAuth {
            throw ValidationError("no API token: give --api-token-sha256, --token-file FILE or PROPELLER_API_TOKEN (or --insecure-no-auth for a trusted loopback setup)")
        }
        if let tlsKey {
            var st = stat()
            if stat(absolutePath(tlsKey), &st) == 0 && st.st_mode & 0o077 != 0 {
                throw ValidationError("TLS key \(tlsKey) can be read by other users (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it")
            }
        }
        var host = "127.0.0.1"
        var port = Int(Environment.current["MANAGER_HTTP_PORT"] ?? "") ?? 7070
        if let http { (host, port) = try httpEndpoint(http) }
        var configuration = ManagerConfiguration()
        configuration.policy = SchedulingPolicy(rawValue: scheduler) ?? .binpack
        if let interval = livelinessInterval ?? Environment.current["PROPLET_LIVELINESS_INTERVAL"] {
            do { configuration.livenessInterval = try DurationParsing.parse(interval) } catch { throw ValidationError("invalid liveliness interval \"\(interval)\": \(error)") }
        }
        if let grace = disconnectGrace ?? Environment.current["MANAGER_DISCONNECT_GRACE"] {
            do { configuration.disconnectGrace = try DurationParsing.parse(grace) } catch { throw ValidationError("invalid --disconnect-grace \"\(grace)\": \(error)") }
        }
        guard let memory = try? ByteSize(parsing: defaultMemory), memory.bytes >= 6 << 20 else {
            throw ValidationError("invalid --default-memory \"\(defaultMemory)\": expected a size of at least 6M")
        }
        configuration.defaultMemoryBytes = memory.bytes
        guard defaultPids > 0, InputLimits.pids.contains(defaultPids) else {
            throw ValidationError("invalid --default-pids \(defaultPids): expected 1 to \(InputLimits.pids.upperBound)")
        }
        configuration.defaultPids = defaultPids
        let dir = absolutePath(dataDir)
        try makeDirectory(dir)
        var options = ManagerServer.Options(databasePath: dir + "/manager.db",
                                            mqtt: try daemon.mqttConfiguration(envName: "MANAGER_MQTT_ADDRESS", clientID: "propeller-manager-\(daemon.domain)-\(daemon.channel)"),
                                            topics: daemon.topics)
        if store != "sqlite" {
            var location: PostgresLocation
            do { location = try PostgresLocation(url: store) } catch { throw ValidationError("invalid --store: \(error)") }
            if location.password == nil { location.password = Environment.current["PGPASSWORD"] }
            var leaseDuration = Duration.seconds(3)
            if let text = lease ?? Environment.current["MANAGER_LEASE"] {
                do { leaseDuration = try DurationParsing.parse(text) } catch { throw ValidationError("invalid --lease \"\(text)\": \(error)") }
                guard leaseDuration >= .milliseconds(300) else { throw ValidationError("invalid --lease \"\(text)\": at least 300ms") }
            }
            let id = managerID ?? Environment.current["MANAGER_ID"] ?? "\(hostName())-\(port)"
            location.applicationName = "propeller-manager-\(id)"
            // A store call may take no longer than the lease: a leader cut off from the database
            // finds out, and steps down, before another can take over.
            options.openStore = { [location, logger, leaseDuration] in try PostgresStore(location: location, timeout: max(leaseDuration, .seconds(1)), logger: logger) }
            let scheme = tlsCert == nil ? "http" : "https"
            let advertised = advertise ?? Environment.current["MANAGER_ADVERTISE"] ?? "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)"
            guard advertised.hasPrefix("http://") || advertised.hasPrefix("https://") else { throw ValidationError("invalid --advertise \"\(advertised)\": expected an http(s):// URL") }
            options.leadership = { [id, advertised, leaseDuration] store in
                guard let postgres = store as? PostgresStore else { return nil }
                return PostgresLeadership(store: postgres, id: id, address: advertised, duration: leaseDuration)
            }
            options.peerCA = peerCA.map(absolutePath)
            logger.info("store", metadata: ["store": "\(location)", "manager": "\(id)", "advertise": "\(advertised)"])
        }
        // Secrets: one key for every manager of a store. Made here only for the embedded store,
        // where no other manager could have made a different one.
        let keyFile = secretsKeyFile ?? Environment.current["MANAGER_SECRETS_KEY_FILE"]
        if let keyFile {
            do { options.secretBox = try SecretBox(keyFile: absolutePath(keyFile), create: store == "sqlite") } catch { throw ValidationError("--secrets-key-file: \(error)") }
        } else if store == "sqlite" {
            do { options.secretBox = try SecretBox(keyFile: dir + "/secrets.key", create: true) } catch { throw ValidationError("secrets key: \(error)") }
        } else {
            logger.notice("secrets are off: managers that share a PostgreSQL store need the same --secrets-key-file")
        }
        options.apiTokens = configured
        if let auditRetention {
            do { options.auditRetention = try DurationParsing.parse(auditRetention) } catch { throw ValidationError("invalid --audit-retention \"\(auditRetention)\": \(error)") }
            guard options.auditRetention ?? .zero >= .seconds(60) else { throw ValidationError("invalid --audit-retention \"\(auditRetention)\": at least 1m") }
        }
        do { options.tokenRetention = try DurationParsing.parse(tokenRetention) } catch { throw ValidationError("invalid --token-retention \"\(tokenRetention)\": \(error)") }
        switch brokerAdmin {
        case "dynsec": options.brokerAdmin = .dynamicSecurity
        case "nats": options.brokerAdmin = .natsUsersFile(path: absolutePath(natsUsersFile ?? ""), pidFiles: natsPidFile.map(absolutePath))
        default: break
        }
        options.propletBrokerURL = propletBroker ?? daemon.mqtt ?? Environment.current["MANAGER_MQTT_ADDRESS"] ?? "tcp://127.0.0.1:1883"
        options.propletBrokerCA = propletBrokerCA ?? daemon.mqttCA
        options.authenticate = !insecureNoAuth
        options.tlsCertificate = tlsCert.map(absolutePath)
        options.tlsKey = tlsKey.map(absolutePath)
        options.host = host
        options.port = port
        options.configuration = configuration
        guard let messageLimit = try? ByteSize(parsing: actorMessageLimit), messageLimit.bytes > 0, messageLimit.bytes <= 64 << 20 else {
            throw ValidationError("invalid --actor-message-limit \"\(actorMessageLimit)\": expected a size up to 64M")
        }
        guard let resultLimit = try? ByteSize(parsing: actorResultLimit), resultLimit.bytes <= 16 << 20 else {
            throw ValidationError("invalid --actor-result-limit \"\(actorResultLimit)\": expected a size up to 16M")
        }
        options.actors.messageLimit = Int(messageLimit.bytes)
        options.actors.resultLimit = Int(resultLimit.bytes)
        do {
            options.actors.maxSyncTimeout = try DurationParsing.parse(actorSyncTimeout)
            guard options.actors.maxSyncTimeout >= .seconds(1) else { throw PropellerError(.invalidArgument, "at least 1s") }
        } catch {
            throw ValidationError("invalid --actor-sync-timeout \"\(actorSyncTimeout)\": \(error)")
        }
        do { options.actors.workerIdleTTL = try DurationParsing.parse(workerIdleTTL) } catch { throw ValidationError("invalid --worker-idle-ttl \"\(workerIdleTTL)\": \(error)") }
        if insecureNoAuth { logger.warning("the API has no authentication (--insecure-no-auth)") }
        if tlsCert == nil && !ClientOptions.isLoopback(url: "http://" + (host.contains(":") ? "[\(host)]" : host)) {
            logger.warning("the API is served over plain http on a non-loopback address: tokens cross the network in clear (give --tls-cert and --tls-key)")
        }
        (options.traces, options.tracingService) = try tracing.traces(serviceName: "propeller-manager", logger: logger)
        try await ManagerServer(options: options, logger: logger).run()
        logger.notice("manager stopped")
    }
}

/// This machine's host name.
func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "manager" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func makeDirectory(_ path: String) throws {
    var current = ""
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "create directory \(current): \(String(cString: strerror(errno)))")
        }
    }
}

/// `propeller manager status`: the managers that share the store, and which one leads.
struct ManagerStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "List the managers that share the store, with their roles.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var list: ListOutputOptions

    func run() throws {
        let api = try client.client()
        let bytes = try api.send("GET", "/managers")
        let format = list.format(client)
        guard format != .json && format != .yaml else { return printList(bytes, format, []) { [] } }
        let status = try api.decode(ManagerClusterStatus.self, bytes)
        printList(bytes, format, [Column("ID"), Column("ADDRESS"), Column("ROLE"), Column("SEEN")]) {
            status.members.map { m in [m.id, m.address, m.role, m.seenAgo.map { String(format: "%.1fs ago", $0) } ?? "-"] }
        }
        if let leader = status.leader { print("leader: \(leader.id) (epoch \(leader.epoch))") }
    }
}
