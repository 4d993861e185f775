import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PropellerCore
import PropellerManager

/// `propeller manager`: REST API, scheduler, store and the MQTT control plane.
struct ManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manager",
        abstract: "Run the manager: REST API, scheduler, task store and MQTT control plane.",
        discussion: """
        Tasks, their history, results and logs, and proplets are kept in DATA_DIR/manager.db \
        (SQLite, WAL); a restarted manager resumes where it stopped. Every API route but /health \
        needs the bearer token from --token-file or PROPELLER_API_TOKEN.
        """
    )

    @OptionGroup var daemon: DaemonOptions

    @Option(help: ArgumentHelp("Address of the REST API (env MANAGER_HTTP_PORT sets the port).", valueName: "host:port"))
    var http: String?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Where the manager keeps its database (env PROPELLER_DATA_DIR).", valueName: "dir"))
    var dataDir: String = Environment.current["PROPELLER_DATA_DIR"] ?? "/var/lib/propeller"

    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the API bearer token (mode 600); else env PROPELLER_API_TOKEN.", valueName: "file"))
    var tokenFile: String?

    @Flag(name: .customLong("insecure-no-auth"), help: "Serve the API without authentication (a trusted loopback setup only).")
    var insecureNoAuth = false

    @Option(help: ArgumentHelp("Placement policy: binpack (fill the fullest proplet that fits), spread (the emptiest) or round-robin.", valueName: "policy"))
    var scheduler: String = "binpack"

    @Option(name: .customLong("liveliness-interval"), help: ArgumentHelp("Proplets' heartbeat interval; 3 missed mean dead (env PROPLET_LIVELINESS_INTERVAL, default 5s).", valueName: "duration"))
    var livelinessInterval: String?

    @Option(name: .customLong("default-memory"), help: ArgumentHelp("Memory reserved and enforced for a task that does not ask (default 256M).", valueName: "size"))
    var defaultMemory: String = "256M"

    func validate() throws {
        if SchedulingPolicy(rawValue: scheduler) == nil { throw ValidationError("invalid --scheduler \"\(scheduler)\": expected binpack, spread or round-robin") }
    }

    func run() async throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "propeller.manager")
        var token = Environment.current["PROPELLER_API_TOKEN"]
        if let tokenFile { token = try readSecretFile(absolutePath(tokenFile), what: "token file") }
        if token?.isEmpty ?? true { token = nil }
        if token == nil && !insecureNoAuth {
            throw ValidationError("no API token: give --token-file FILE or PROPELLER_API_TOKEN (or --insecure-no-auth for a trusted loopback setup)")
        }
        var host = "127.0.0.1"
        var port = Int(Environment.current["MANAGER_HTTP_PORT"] ?? "") ?? 7070
        if let http {
            guard let colon = http.lastIndex(of: ":"), let p = Int(http[http.index(after: colon)...]), p >= 0, p < 65536 else {
                throw ValidationError("invalid --http \"\(http)\": expected HOST:PORT")
            }
            host = String(http[..<colon])
            port = p
        }
        var configuration = ManagerConfiguration()
        configuration.policy = SchedulingPolicy(rawValue: scheduler) ?? .binpack
        if let interval = livelinessInterval ?? Environment.current["PROPLET_LIVELINESS_INTERVAL"] {
            do { configuration.livenessInterval = try DurationParsing.parse(interval) } catch { throw ValidationError("invalid liveliness interval \"\(interval)\": \(error)") }
        }
        guard let memory = try? ByteSize(parsing: defaultMemory), memory.bytes >= 6 << 20 else {
            throw ValidationError("invalid --default-memory \"\(defaultMemory)\": expected a size of at least 6M")
        }
        configuration.defaultMemoryBytes = memory.bytes
        let dir = absolutePath(dataDir)
        try makeDirectory(dir)
        var options = ManagerServer.Options(databasePath: dir + "/manager.db",
                                            mqtt: try daemon.mqttConfiguration(envName: "MANAGER_MQTT_ADDRESS", clientID: "propeller-manager-\(daemon.domain)-\(daemon.channel)"),
                                            topics: daemon.topics, token: token)
        options.host = host
        options.port = port
        options.configuration = configuration
        if token == nil { logger.warning("the API has no authentication (--insecure-no-auth)") }
        try await ManagerServer(options: options, logger: logger).run()
        logger.notice("manager stopped")
    }
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
