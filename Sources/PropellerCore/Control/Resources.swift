/// CPU, memory and process counts, as a task asks for them and a proplet offers them.
///
/// `0` in a request means "not requested" for cpu and pids (no reservation, no limit); memory
/// always has a value because the manager applies its default before scheduling.
public struct Resources: Codable, Sendable, Hashable {
    /// Thousandths of a CPU (`1500` is one and a half cores).
    public var cpuMillis: UInt64
    public var memoryBytes: UInt64
    public var pids: UInt64

    public init(cpuMillis: UInt64 = 0, memoryBytes: UInt64 = 0, pids: UInt64 = 0) {
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.pids = pids
    }

    public static let zero = Resources()

    public static func + (a: Resources, b: Resources) -> Resources {
        Resources(cpuMillis: a.cpuMillis &+ b.cpuMillis, memoryBytes: a.memoryBytes &+ b.memoryBytes, pids: a.pids &+ b.pids)
    }

    /// Saturating subtraction: never below zero.
    public static func - (a: Resources, b: Resources) -> Resources {
        Resources(cpuMillis: a.cpuMillis > b.cpuMillis ? a.cpuMillis - b.cpuMillis : 0,
                  memoryBytes: a.memoryBytes > b.memoryBytes ? a.memoryBytes - b.memoryBytes : 0,
                  pids: a.pids > b.pids ? a.pids - b.pids : 0)
    }

    /// Whether every dimension of `other` fits within this one.
    public func holds(_ other: Resources) -> Bool {
        other.cpuMillis <= cpuMillis && other.memoryBytes <= memoryBytes && other.pids <= pids
    }
}

/// What a proplet can run: its resources and how many tasks at once.
public struct Capacity: Codable, Sendable, Hashable {
    public var cpuMillis: UInt64
    public var memoryBytes: UInt64
    public var pids: UInt64
    public var tasks: UInt64

    public init(cpuMillis: UInt64, memoryBytes: UInt64, pids: UInt64, tasks: UInt64) {
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.tasks = tasks
    }

    public var resources: Resources { Resources(cpuMillis: cpuMillis, memoryBytes: memoryBytes, pids: pids) }
}
