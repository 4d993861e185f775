#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// What `propeller run --report FILE` writes: the fields a proplet reports for a task result.
struct ReportFile: Codable {
    var id: String
    var exitCode: Int32
    var signal: Int32?
    var oomKilled: Bool
    var timedOut: Bool
    var startedAt: Double
    var finishedAt: Double
    var runtimeSeconds: Double
    var cpuUsec: UInt64?
    var memoryPeakBytes: UInt64?
    var throttledPeriods: UInt64?
    var throttledUsec: UInt64?
    var oomKills: UInt64
    /// How the container entered its cgroup: `clone3` (started in it, cgroup v2) or
    /// `cgroup.procs` (v1, or a kernel without CLONE_INTO_CGROUP).
    var cgroupJoin: String?

    enum CodingKeys: String, CodingKey {
        case id, signal
        case exitCode = "exit_code", oomKilled = "oom_killed", timedOut = "timed_out", startedAt = "started_at"
        case finishedAt = "finished_at", runtimeSeconds = "runtime_seconds", cpuUsec = "cpu_usec"
        case memoryPeakBytes = "memory_peak_bytes", throttledPeriods = "throttled_periods", throttledUsec = "throttled_usec"
        case oomKills = "oom_kills", cgroupJoin = "cgroup_join"
    }

    static func save(_ report: ReportFile, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = try encoder.encode(report)
        data.append(UInt8(ascii: "\n"))
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PropellerError(.systemCall, "open \(path): errno \(errno)") }
        defer { close(fd) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw PropellerError(.systemCall, "write \(path): errno \(errno)") }
    }
}
