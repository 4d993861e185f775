/// Live usage of what runs on a proplet, sampled from the cgroups every `--stats-interval` and
/// sent on `control/manager/{proplet}/stats` (best effort: a lost report is a gap in a graph).
public struct UsageSample: Codable, Sendable, Hashable {
    /// Wall-clock time of the sample.
    public var at: Double
    /// CPU used since the sample before, in CPUs (1.0: one CPU busy the whole time); nil for the
    /// first sample of a task.
    public var cpuCores: Double?
    /// CPU time used in all, microseconds.
    public var cpuUsageMicros: UInt64?
    /// Memory charged now (page cache and tmpfs included), bytes.
    public var memoryBytes: UInt64?
    /// Processes and threads now.
    public var pids: UInt64?
    /// Bytes read and written on block devices in all (cgroup v2 only).
    public var ioReadBytes: UInt64?
    public var ioWriteBytes: UInt64?

    public init(at: Double, cpuCores: Double? = nil, cpuUsageMicros: UInt64? = nil, memoryBytes: UInt64? = nil, pids: UInt64? = nil,
                ioReadBytes: UInt64? = nil, ioWriteBytes: UInt64? = nil) {
        self.at = at
        self.cpuCores = cpuCores
        self.cpuUsageMicros = cpuUsageMicros
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.ioReadBytes = ioReadBytes
        self.ioWriteBytes = ioWriteBytes
    }
}

extension UsageSample {
    /// Adds `other`'s fields to this one's (a proplet's total); a field none of the parts has
    /// stays nil.
    public mutating func add(_ other: UsageSample) {
        func sum<T: AdditiveArithmetic>(_ a: T?, _ b: T?) -> T? { b.map { (a ?? .zero) + $0 } ?? a }
        cpuCores = sum(cpuCores, other.cpuCores)
        cpuUsageMicros = sum(cpuUsageMicros, other.cpuUsageMicros)
        memoryBytes = sum(memoryBytes, other.memoryBytes)
        pids = sum(pids, other.pids)
        ioReadBytes = sum(ioReadBytes, other.ioReadBytes)
        ioWriteBytes = sum(ioWriteBytes, other.ioWriteBytes)
    }
}

/// One task attempt's sample.
public struct TaskUsageSample: Codable, Sendable, Hashable {
    public var taskId: String
    public var attempt: Int
    public var sample: UsageSample

    public init(taskId: String, attempt: Int, sample: UsageSample) {
        self.taskId = taskId
        self.attempt = attempt
        self.sample = sample
    }
}

/// `control/manager/{proplet}/stats`: the samples of a proplet's running tasks, and their sum.
public struct UsageReport: Codable, Sendable, Hashable, PropletMessage {
    public var propletId: String
    public var tasks: [TaskUsageSample]
    /// The sum over the proplet's tasks (nil fields: none reported them).
    public var total: UsageSample

    public init(propletId: String, tasks: [TaskUsageSample], total: UsageSample) {
        self.propletId = propletId
        self.tasks = tasks
        self.total = total
    }
}
