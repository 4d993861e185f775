#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// Resource limits for one task's cgroup. `nil` means "no limit".
public struct CgroupLimits: Hashable, Sendable {
    public var memoryBytes: UInt64?
    /// CPU bandwidth in thousandths of a CPU (`--cpus 0.25` is 250).
    public var cpuMillis: UInt64?
    public var pids: UInt64?

    public init(memoryBytes: UInt64? = nil, cpuMillis: UInt64? = nil, pids: UInt64? = nil) {
        self.memoryBytes = memoryBytes
        self.cpuMillis = cpuMillis
        self.pids = pids
    }

    /// The CFS period Propeller uses (100 ms, as Docker and the kernel default).
    static let cpuPeriodMicros: UInt64 = 100_000

    var cpuQuotaMicros: UInt64? {
        cpuMillis.map { max(1000, $0 * Self.cpuPeriodMicros / 1000) }
    }
}

/// What the kernel counted for a task's cgroup.
public struct CgroupStats: Hashable, Sendable, Codable {
    /// Processes the kernel OOM-killed in this cgroup.
    public var oomKills: UInt64 = 0
    /// Highest memory use seen, in bytes (nil when the kernel does not report it).
    public var memoryPeakBytes: UInt64?
    /// CPU time used by all processes, in microseconds.
    public var cpuUsageMicros: UInt64?
    /// CFS periods in which the cgroup was throttled, and the time spent throttled.
    public var throttledPeriods: UInt64?
    public var throttledMicros: UInt64?

    public init() {}
}

/// A cgroup's usage now: its counters and gauges, read from the kernel.
public struct CgroupUsage: Hashable, Sendable {
    /// CPU time used in all, microseconds.
    public var cpuUsageMicros: UInt64?
    /// Memory charged now (page cache and tmpfs included), bytes.
    public var memoryBytes: UInt64?
    /// Processes and threads now.
    public var pids: UInt64?
    /// Bytes read and written on block devices in all (cgroup v2's io.stat; nil on v1).
    public var ioReadBytes: UInt64?
    public var ioWriteBytes: UInt64?

    public init() {}
}

/// The filesystem operations a cgroup driver needs. The real one is ``KernelCgroupFilesystem``;
/// unit tests substitute one that imitates cgroupfs in a temp directory.
public protocol CgroupFilesystem: Sendable {
    func makeDirectory(_ path: String) throws
    func removeDirectory(_ path: String) throws
    func read(_ path: String) throws -> String
    func write(_ path: String, _ value: String) throws
    func exists(_ path: String) -> Bool
}

/// cgroupfs as the kernel provides it.
public struct KernelCgroupFilesystem: CgroupFilesystem {
    public init() {}

    public func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else { throw FileIO.systemError("create cgroup", path) }
    }

    public func removeDirectory(_ path: String) throws {
        guard rmdir(path) == 0 else { throw FileIO.systemError("remove cgroup", path) }
    }

    public func read(_ path: String) throws -> String { try FileIO.readString(path) }
    public func write(_ path: String, _ value: String) throws { try FileIO.writeExisting(path, value) }
    public func exists(_ path: String) -> Bool { FileIO.exists(path) }
}

/// One task's cgroup(s), created by a ``CgroupDriver``.
public protocol TaskCgroup: Sendable {
    /// The files the launched child writes "0" into to join this cgroup, one per hierarchy.
    ///
    /// v1: `tasks`, which moves only the calling thread (the child has one then). A move of
    /// the caller's own thread skips the kernel's global threadgroup lock, whose write side
    /// waits for an RCU grace period: 0.02 ms instead of 5-20 ms per container here
    /// (`cgroup.procs` takes it). v2 has no such path (`cgroup.threads` moves a thread only
    /// within a threaded subtree): `cgroup.procs`.
    var joinFiles: [String] { get }
    /// The directory a child can start in (cgroup v2: `clone3` with `CLONE_INTO_CGROUP`), so that
    /// it writes none of ``joinFiles``; nil on v1.
    var cloneIntoDirectory: String? { get }
    /// The directories that make up this cgroup (one per hierarchy), for diagnostics.
    var directories: [String] { get }
    /// Counters read from the kernel.
    func stats() -> CgroupStats
    /// What the cgroup uses now (live usage: sampled while the task runs).
    func usage() -> CgroupUsage
    /// SIGKILLs every process in the cgroup.
    func killAll() throws
    /// Removes the task's cgroup (the processes must be gone); the shared base stays.
    func remove() throws
}

/// Creates per-task cgroups under this process's own cgroup(s) and applies limits.
public protocol CgroupDriver: Sendable {
    var layout: CgroupLayout { get }
    /// Creates `<own>/propeller/<name>` in every hierarchy needed and writes `limits`.
    /// A limit the host cannot enforce throws `.unsupported`, and nothing is left behind.
    func create(name: String, limits: CgroupLimits) throws -> any TaskCgroup
    /// Removes the `<own>/propeller` directories when no task cgroup is left in them. The base
    /// stays while a runtime is alive (creating it per task costs a mkdir and an rmdir in every
    /// hierarchy); a runtime calls this when it shuts down.
    func removeEmptyBases()
    /// Kills whatever still runs in the task cgroup `name` and removes it (a crashed
    /// predecessor's leftovers). Returns whether there was anything to remove.
    @discardableResult
    func removeLeftover(name: String) -> Bool
}

/// Picks the driver for the running host.
public enum CgroupDrivers {
    public static func forHost(filesystem: any CgroupFilesystem = KernelCgroupFilesystem()) throws -> any CgroupDriver {
        let layout = try CgroupLayout.current()
        return driver(for: layout, filesystem: filesystem)
    }

    public static func driver(for layout: CgroupLayout, filesystem: any CgroupFilesystem) -> any CgroupDriver {
        switch layout.mode {
        case .unified: return CgroupV2Driver(layout: layout, fs: filesystem)
        case .legacy: return CgroupV1Driver(layout: layout, fs: filesystem)
        }
    }
}

/// The name of the directory under a process's own cgroup that holds its tasks' cgroups.
let cgroupBaseName = "propeller"

/// Parses `key value` lines (memory.events, cpu.stat, memory.oom_control).
func parseFlatKeyed(_ text: String) -> [String: UInt64] {
    var out: [String: UInt64] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ")
        if parts.count == 2, let v = UInt64(parts[1]) { out[String(parts[0])] = v }
    }
    return out
}

/// rmdir that waits briefly for exiting processes to leave (EBUSY right after a kill).
func removeCgroupDirectory(_ fs: any CgroupFilesystem, _ path: String) throws {
    var attempt = 0
    while true {
        do {
            try fs.removeDirectory(path)
            return
        } catch let error as PropellerError where error.code == .notFound {
            return
        } catch {
            attempt += 1
            if attempt > 200 { throw error }
            usleep(attempt < 20 ? 500 : 5000)
        }
    }
}

/// mkdir for the shared base directory: already there is fine.
func ensureDirectory(_ fs: any CgroupFilesystem, _ path: String) throws {
    if fs.exists(path) { return }
    do {
        try fs.makeDirectory(path)
    } catch {
        if !fs.exists(path) { throw error }
    }
}

/// Removes the base directory once the last task is gone; busy or already gone is fine.
func removeBaseIfEmpty(_ fs: any CgroupFilesystem, _ path: String) {
    try? fs.removeDirectory(path)
}

/// Creates a task directory under a base that a concurrent `removeBaseIfEmpty` may delete.
func makeTaskDirectory(_ fs: any CgroupFilesystem, base: String, task: String, prepareBase: (String) throws -> Void) throws {
    var lastError: (any Error)?
    for _ in 0..<10 {
        try ensureDirectory(fs, base)
        do {
            try prepareBase(base)
            try fs.makeDirectory(task)
            return
        } catch let error as PropellerError where error.code == .notFound {
            lastError = error  // the base vanished between the two steps: try again
        }
    }
    throw lastError ?? PropellerError(.internalError, "cannot create cgroup \(task)")
}
