import Foundation
import PropellerCore

/// A real three-node NATS cluster (Debian's `nats-server` 2.9) on loopback, each node with
/// JetStream and an MQTT listener, routes between all of them, in a temp directory; stopped and
/// removed afterwards. `kill(_:)` is SIGKILL of one node, `start(_:)` brings it back.
public final class NATSCluster: @unchecked Sendable {
    public static let binary = "/usr/sbin/nats-server"
    public let directory: TempDirectory
    /// Per node: the MQTT port, the NATS client port, the route port, the monitoring port.
    public private(set) var mqttPorts: [Int] = []
    private var clientPorts: [Int] = []
    private var routePorts: [Int] = []
    private var monitorPorts: [Int] = []
    private var processes: [Process?]

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    /// `mqttPorts`: the MQTT listeners' ports (free ones when nil); `extra`: lines added to
    /// every node's configuration (an `include` of provisioned users: NATS resolves an include
    /// relative to the configuration's directory, where `links` puts symbolic links by name).
    public init(nodes: Int = 3, mqttPorts ports: [Int]? = nil, extra: String = "", links: [String: String] = [:]) throws {
        guard Self.isInstalled else { throw PropellerError(.notFound, "nats-server is not installed: scripts/setup installs Debian's nats-server") }
        directory = try TempDirectory("propeller-nats")
        processes = Array(repeating: nil, count: nodes)
        for (name, target) in links { symlink(target, directory.path + "/" + name) }
        // A free port can be taken by another test between the probe and the node's bind: then
        // the whole cluster starts again on other ports.
        for attempt in 1... {
            do {
                try launchAll(nodes: nodes, mqttPorts: ports, extra: extra)
                return
            } catch is PortTaken {
                stop()
                for i in 0..<nodes { try? FileManager.default.removeItem(atPath: directory.path + "/n\(i)") }
                if attempt == 4 { throw PropellerError(.internalError, "nats: another process took the ports chosen, four times") }
            }
        }
    }

    /// Where node `i` writes its process id (what `nats-server --signal reload` reads).
    public func pidFile(_ i: Int) -> String { directory.path + "/n\(i).pid" }

    /// A node could not bind one of its ports.
    private struct PortTaken: Error {}

    private func launchAll(nodes: Int, mqttPorts ports: [Int]?, extra: String) throws {
        mqttPorts = try ports ?? (0..<nodes).map { _ in try freeLoopbackPort() }
        clientPorts = try (0..<nodes).map { _ in try freeLoopbackPort() }
        routePorts = try (0..<nodes).map { _ in try freeLoopbackPort() }
        monitorPorts = try (0..<nodes).map { _ in try freeLoopbackPort() }
        let routes = routePorts.map { "nats-route://127.0.0.1:\($0)" }.joined(separator: ", ")
        for i in 0..<nodes {
            writeFile(directory.path + "/n\(i).conf", """
                server_name: n\(i)
                listen: 127.0.0.1:\(clientPorts[i])
                http: 127.0.0.1:\(monitorPorts[i])
                pid_file: "\(pidFile(i))"
                max_payload: 8MB
                jetstream { store_dir: "\(directory.path)/n\(i)", max_memory_store: 64MB, max_file_store: 512MB }
                cluster { name: propeller, listen: 127.0.0.1:\(routePorts[i]), routes: [\(routes)] }
                mqtt { listen: 127.0.0.1:\(mqttPorts[i]) }
                \(extra)

                """)
        }
        for i in 0..<nodes { try launch(i) }
        for i in 0..<nodes {
            do {
                try waitUntilReady(i)
            } catch where ports == nil && log(i).contains("address already in use") {
                throw PortTaken()
            }
        }
    }

    /// `tcp://` URLs of the nodes' MQTT listeners, starting with node `first`.
    public func urls(startingAt first: Int = 0) -> String {
        (0..<mqttPorts.count).map { mqttPorts[(first + $0) % mqttPorts.count] }.map { "tcp://127.0.0.1:\($0)" }.joined(separator: ",")
    }

    public func logPath(_ i: Int) -> String { directory.path + "/n\(i).log" }

    public func log(_ i: Int) -> String { readFile(logPath(i)) ?? "" }

    /// How many permission violations the nodes logged (a refused publish or subscription).
    public func violations() -> Int {
        (0..<mqttPorts.count).map { log($0).components(separatedBy: "Violation").count - 1 }.reduce(0, +)
    }

    private func launch(_ i: Int) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["-c", directory.path + "/n\(i).conf"]
        p.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: logPath(i), contents: nil)
        p.standardError = FileHandle(forWritingAtPath: logPath(i)) ?? FileHandle.nullDevice
        try p.run()
        processes[i] = p
    }

    /// Waits until the node answers /healthz (JetStream included; `caughtUp`: its streams and
    /// consumers current too) and takes MQTT connections.
    private func waitUntilReady(_ i: Int, caughtUp: Bool = true) throws {
        let health = caughtUp ? "/healthz" : "/healthz?js-enabled-only=true"
        for _ in 0..<600 {
            if httpGet(port: monitorPorts[i], health)?.contains("\"ok\"") == true && canConnect(port: mqttPorts[i]) { return }
            if processes[i]?.isRunning == false { break }  // it exited (a port it could not bind)
            usleep(50_000)
        }
        throw PropellerError(.internalError, "nats node \(i) did not become ready: \(readFile(logPath(i))?.suffix(3000) ?? "")")
    }

    /// Starts a node that was killed (same ports, same JetStream directory); it serves before it
    /// has caught up with the others (which may take longer than clients wait for it).
    public func start(_ i: Int) throws {
        try launch(i)
        try waitUntilReady(i, caughtUp: false)
    }

    /// Every node reads its configuration again (SIGHUP), as `systemctl reload` does.
    public func reload() {
        for case let p? in processes { Glibc.kill(p.processIdentifier, SIGHUP) }
    }

    /// SIGKILL of one node, as a crash or a lost machine.
    public func kill(_ i: Int) {
        guard let p = processes[i] else { return }
        Glibc.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        processes[i] = nil
    }

    public func stop() {
        for case let p? in processes {
            p.terminate()
            p.waitUntilExit()
        }
        processes = processes.map { _ in nil }
    }

    deinit {
        stop()
        directory.remove()
    }
}
