#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerTracing
import PropellerImage
import PropellerMQTT

/// How a proplet is set up: identity, capacity, where it keeps things, how it reaches the broker
/// and registries.
public struct PropletOptions: Sendable {
    public var id: String
    public var name: String
    public var labels: [String: String] = [:]
    /// The only namespaces whose work it takes (empty: every namespace).
    public var namespaces: [String] = []
    /// CNI networks (`--network bridge` and the operator's); nil: the defaults under the data
    /// directory's `cni`.
    public var cni: CNINetworks.Configuration?
    /// The most a task's `--output` directory may hold to be kept, and how long it is kept.
    public var outputLimitBytes: UInt64 = 1 << 30
    public var outputTTL: Duration = .seconds(24 * 3600)
    /// Host volumes offered to tasks by name (`--host-volume NAME=/path[:ro]`).
    public var hostVolumes: [String: PropletVolumes.Offer] = [:]
    public var capacity: Capacity
    public var dataDirectory: String
    public var mqtt: MQTTConfiguration
    public var topics: Topics
    public var heartbeatInterval: Duration = .seconds(5)
    /// How often running tasks' usage is sampled and sent (zero: never).
    public var statsInterval: Duration = .seconds(1)
    /// On SIGTERM: how long running tasks may go on before they are stopped.
    public var drainTimeout: Duration = .seconds(30)
    /// Where attempts' spans go (`--otlp-endpoint`; a no-op tracer by default).
    public var traces = Traces()
    /// Size of the tmpfs that actor executions run from (0: the data directory's disk).
    public var scratchBytes: UInt64 = 1 << 30
    /// Output kept per stream for the result's tails.
    public var tailBytes = 64 << 10
    /// Makes the registry client (credentials, insecure registries) for `--image-source direct`.
    public var registryClient: @Sendable () throws -> RegistryClient
    /// Where images come from: the proxy over MQTT (default) or the registry itself.
    public var imageSource: ImageSource = .proxy
    /// How a run gets its root: an overlay on the unpacked image (default, where the kernel has
    /// overlayfs) or a copy of it (for a data directory overlayfs cannot use as its upper layer,
    /// such as one that is itself on overlayfs inside a container).
    public var rootfsMode: RootfsMode = .overlay

    public enum RootfsMode: String, Sendable, CaseIterable {
        case overlay, copy
    }

    public enum ImageSource: String, Sendable, CaseIterable {
        case proxy, direct
    }

    public init(id: String, name: String, capacity: Capacity, dataDirectory: String, mqtt: MQTTConfiguration, topics: Topics,
                registryClient: @escaping @Sendable () throws -> RegistryClient) {
        self.id = id
        self.name = name
        self.capacity = capacity
        self.dataDirectory = dataDirectory
        self.mqtt = mqtt
        self.topics = topics
        self.registryClient = registryClient
    }

    /// This machine's cores, memory and pid limit; task slots default to 32.
    public static func detectedCapacity() -> Capacity {
        let cores = UInt64(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        var memory: UInt64 = 0
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
           let kib = UInt64(line.split(separator: " ").dropFirst().first ?? "") {
            memory = kib * 1024
        }
        var pids: UInt64 = 32768
        if let text = try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8),
           let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            pids = value
        }
        return Capacity(cpuMillis: cores * 1000, memoryBytes: memory, pids: pids, tasks: 32)
    }

    /// The id kept in `<data>/proplet/id`, made on first start, so a restarted proplet is the
    /// same proplet to the manager.
    public static func persistentID(dataDirectory: String) throws -> String {
        let dir = dataDirectory + "/proplet"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if Topics.isValidComponent(id) { return id }
        }
        let id = UUID().uuidString.lowercased()
        try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        return id
    }
}
