import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// A whole Propeller deployment on loopback, from real processes: mosquitto, docker-registry
/// holding the fixture image as `app:v1`, `propeller manager`, and proplets started on demand.
final class Cluster: @unchecked Sendable {
    let broker: MosquittoServer
    let registry: RegistryServer
    let dir: TempDirectory
    let httpPort: Int
    /// The API ports of the managers (one, or several sharing a PostgreSQL store).
    let managerPorts: [Int]
    /// The PostgreSQL store's URL when the managers share one.
    let store: String?
    /// A NATS cluster that carries the control plane instead of mosquitto.
    let nats: NATSCluster?

    /// The broker URLs a daemon is given: mosquitto's, or every NATS node's, starting at a node
    /// of its own (so that messages cross the cluster's routes).
    func brokerURLs(startingAt first: Int) -> String {
        nats?.urls(startingAt: first) ?? "tcp://127.0.0.1:\(broker.port)"
    }
    let token = "e2e-" + UUID().uuidString
    let interval: String
    let tag: String
    let credentials: (String, String)?
    let proxyPort: Int
    private(set) var managers: [DaemonProcess?]
    var manager: DaemonProcess? { managers[0] }
    private(set) var proxy: DaemonProcess?
    private(set) var proplets: [String: DaemonProcess] = [:]

    var image: String { "\(registry.address)/\(tag)" }
    var managerURL: String { "http://127.0.0.1:\(httpPort)" }

    /// With `proxy`, a `propeller proxy` holding `credentials` for the registry serves images;
    /// without, proplets must be started with `--image-source direct`.
    /// The manager's data directory, a tmpfs of this size when asked (to fill it: a full disk).
    let managerStoreSize: String?
    /// More arguments for every manager.
    let managerArguments: [String]
    /// More environment for managers and proplets (set here, never with setenv in the test process).
    let daemonEnvironment: [String: String]
    var managerData: String { dir.path + "/manager" }

    init(interval: String = "1s", tag: String = "app:v1", credentials: (String, String)? = nil, proxy: Bool = true, managerStoreSize: String? = nil,
         store: String? = nil, managers: Int = 1, nats: NATSCluster? = nil, managerArguments: [String] = [], daemonEnvironment: [String: String] = [:]) throws {
        self.managerArguments = managerArguments
        self.daemonEnvironment = daemonEnvironment
        self.managerStoreSize = managerStoreSize
        self.store = store
        self.nats = nats
        managerPorts = try (0..<managers).map { _ in try freeLoopbackPort() }
        self.managers = Array(repeating: nil, count: managers)
        self.interval = interval
        self.tag = tag
        self.credentials = credentials
        dir = try TempDirectory("propeller-cluster")
        broker = try MosquittoServer()
        registry = try ImageTestContext().registry(holding: tag, credentials: credentials)
        httpPort = managerPorts[0]
        proxyPort = try freeLoopbackPort()
        writeFile(dir.path + "/token", token)
        chmod(dir.path + "/token", 0o600)
        if let managerStoreSize {
            mkdir(managerData, 0o700)
            let mounted = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(managerStoreSize)", "propeller-test-store", managerData], timeout: 10)
            guard mounted.status == 0 else { throw PropellerError(.internalError, "mount a tmpfs on \(managerData): \(String(decoding: mounted.stderr, as: UTF8.self))") }
        }
        for i in 0..<managers { try startManager(i) }
        if proxy { try startProxy(password: credentials?.1) }
    }

    /// Starts the proxy (64 KiB chunks, so the fixture's layers make many), with the registry
    /// password given (nil: the cluster's), and test faults when asked.
    func startProxy(password: String? = nil, faults: String? = nil) throws {
        var env: [String: String] = [:]
        if let credentials {
            env["PROXY_REGISTRY_URL"] = registry.address
            env["PROXY_REGISTRY_USERNAME"] = credentials.0
            env["PROXY_REGISTRY_PASSWORD"] = password ?? credentials.1
        }
        if let faults { env["PROPELLER_PROXY_FAULTS"] = faults }
        proxy = try DaemonProcess(propellerBinary, ["proxy", "--mqtt", brokerURLs(startingAt: 2), "--http", "127.0.0.1:\(proxyPort)",
                                                    "--data-dir", dir.path + "/proxy-data", "--chunk-size", "64K", "--log-level", "debug"],
                                  environment: env, logPath: dir.path + "/proxy-\(UUID().uuidString.prefix(4)).log")
        for _ in 0..<500 {
            if canConnect(port: proxyPort) { return }
            usleep(20_000)
        }
        throw PropellerError(.internalError, "the proxy did not listen on \(proxyPort):\n\(proxy?.log ?? "")")
    }

    func stopProxy() { proxy?.stop() }
    func crashProxy() { proxy?.crash() }

    /// A counter from the proxy's /metrics.
    func proxyMetric(_ name: String) -> UInt64? { metric("propeller_proxy_" + name, in: httpGet(port: proxyPort, "/metrics")) }

    /// Starts manager `i` (with a PostgreSQL store: `m0`, `m1`, … with a 2 s lease; `emptyData`
    /// gives it a new, empty data directory).
    func startManager(_ i: Int = 0, emptyData: Bool = false) throws {
        let port = managerPorts[i]
        var data = i == 0 ? managerData : managerData + "-\(i)"
        if emptyData { data += "-" + UUID().uuidString.prefix(4) }
        // On NATS each manager starts at a node of its own, as on three machines.
        var arguments = ["manager", "--mqtt", brokerURLs(startingAt: i), "--http", "127.0.0.1:\(port)",
                         "--data-dir", data, "--token-file", dir.path + "/token",
                         "--liveliness-interval", interval, "--log-level", "debug"] + managerArguments
        var environment = daemonEnvironment
        if let store {
            // The password stays out of the command line.
            environment["MANAGER_STORE"] = store
            arguments += ["--manager-id", "m\(i)", "--lease", "2s"]
        }
        managers[i] = try DaemonProcess(propellerBinary, arguments, environment: environment, logPath: dir.path + "/manager\(i)-\(UUID().uuidString.prefix(4)).log")
        for _ in 0..<500 {
            if canConnect(port: port) { return }
            usleep(20_000)
        }
        throw PropellerError(.internalError, "manager \(i) did not listen on \(port):\n\(managers[i]?.log ?? "")")
    }

    func stopManager(_ i: Int = 0) { managers[i]?.stop() }
    func crashManager(_ i: Int = 0) { managers[i]?.crash() }

    /// Starts a proplet with this id and waits until the manager lists it alive.
    func startProplet(_ id: String, memory: String, maxTasks: Int = 32, extra: [String] = [], waitUntilAlive: Bool = true) throws {
        proplets[id] = try DaemonProcess(propellerBinary, ["proplet", "--id", id, "--name", id, "--mqtt", brokerURLs(startingAt: 1),
                                                           "--data-dir", dir.path + "/proplet-" + id, "--memory", memory, "--max-tasks", String(maxTasks),
                                                           "--liveliness-interval", interval, "--log-level", "debug"] + extra,
                                         environment: daemonEnvironment, logPath: dir.path + "/proplet-\(id)-\(UUID().uuidString.prefix(4)).log")
        guard waitUntilAlive else { return }
        try waitUntil("proplet \(id) alive", timeout: 15) { try self.proplet(id)?["alive"] as? Bool == true }
    }

    func proplet(_ id: String) throws -> [String: Any]? {
        let r = try cli(["proplet", "get", id, "--json"])
        guard r.status == 0 else { return nil }
        return try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any]
    }

    func crashProplet(_ id: String) { proplets[id]?.crash() }

    /// Starts a crashed proplet again (same id and data directory); returns its log lines that
    /// report a container of its predecessor cleaned up.
    func restartCrashedProplet(_ id: String, memory: String) throws -> [Substring] {
        try startProplet(id, memory: memory)
        return (proplets[id]?.log ?? "").split(separator: "\n").filter { $0.contains("cleaned up a container left by a previous run") }
    }
    func stopProplet(_ id: String) { proplets[id]?.stop() }

    /// The manager the CLI talks to unless told (with several, any one serves the whole API).
    var defaultManager = 0
    /// More environment for the CLI (PROPELLER_ELECTION_WAIT, say).
    var cliEnvironment: [String: String] = [:]

    func cli(_ args: [String], via i: Int? = nil, whileRunning: ((Process) -> Void)? = nil) throws -> CLIResult {
        try propeller(args, environment: cliEnvironment.merging(["PROPELLER_MANAGER_URL": "http://127.0.0.1:\(managerPorts[i ?? defaultManager])",
                                                                 "PROPELLER_API_TOKEN": token]) { _, b in b }, whileRunning: whileRunning)
    }

    /// Creates (and starts) a task; returns its id.
    func create(_ name: String, _ flags: [String] = [], command: [String] = []) throws -> String {
        let r = try cli(["task", "create", name, "--image", image, "--start"] + flags + (command.isEmpty ? [] : ["--"] + command))
        guard r.status == 0 else { throw PropellerError(.internalError, "task create failed: \(r.stderrText)") }
        return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func task(_ id: String) throws -> [String: Any] {
        let r = try cli(["task", "get", id, "--json"])
        guard r.status == 0, let object = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
            throw PropellerError(.internalError, "task get \(id) failed: \(r.stderrText)")
        }
        return object
    }

    @discardableResult
    func waitFor(_ id: String, state: String, timeout: Double = 30) throws -> [String: Any] {
        var last: [String: Any] = [:]
        try waitUntil("task \(id) \(state)", timeout: timeout) {
            last = (try? self.task(id)) ?? last
            return last["state"] as? String == state
        }
        return last
    }

    /// Waits for the task to end, whichever way; its record.
    @discardableResult
    func waitForEnd(_ id: String, timeout: Double = 30) throws -> [String: Any] {
        var last: [String: Any] = [:]
        try waitUntil("task \(id) to end", timeout: timeout) {
            last = try self.task(id)
            return ["completed", "failed", "stopped"].contains(last["state"] as? String ?? "")
        }
        return last
    }

    func waitUntil(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        throw PropellerError(.internalError, "timed out waiting for \(what)\n--- manager log ---\n"
                                                + managers.enumerated().map { "manager \($0.offset):\n\($0.element?.log.suffix(4000) ?? "")" }.joined(separator: "\n")
                                                + "\n--- proxy ---\n\(proxy?.log.suffix(3000) ?? "")\n--- proplets ---\n"
                                                + proplets.map { "\($0.key):\n\($0.value.log.suffix(3000))" }.joined(separator: "\n"))
    }

    /// Stops every process gracefully (the proplets first, so their tasks end and report).
    func stopAll() {
        for p in proplets.values { p.stop() }
        proxy?.stop()
        for m in managers { m?.stop() }
        broker.stop()
    }

    deinit {
        for p in proplets.values { p.stop() }
        proxy?.stop()
        for m in managers { m?.stop() }
        broker.stop()
        registry.stop()
        if managerStoreSize != nil { _ = try? runProcess("/bin/umount", [managerData], timeout: 30) }
        dir.remove()
    }
}
