#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import Dispatch
import Logging
import PropellerCore
import Synchronization

/// How a container ended.
public struct ExitReport: Sendable, Hashable, Codable {
    /// The exit code, or 128 + N when signal N killed the process (shell convention).
    public var exitCode: Int32
    /// The signal that killed the container's process, if any.
    public var signal: Int32?
    /// The kernel's OOM killer acted inside the container's cgroup.
    public var oomKilled: Bool
    /// The container ran past its timeout and Propeller killed it.
    public var timedOut: Bool
    /// Counters from the container's cgroup, read just before it was removed.
    public var usage: CgroupStats
    /// Wall-clock start and end, seconds since the epoch.
    public var startedAt: Double
    public var finishedAt: Double
    /// Time from launch to exit.
    public var runtime: Duration
}

/// A container whose command is running. Call ``wait(timeout:interruptFD:onInterrupt:)`` once;
/// it reaps the process and removes the cgroup.
public final class RunningContainer: Sendable {
    public let id: ContainerID
    /// The process id (in the caller's pid namespace) of the container's PID 1.
    public let pid: pid_t
    public let cgroup: any TaskCgroup
    /// Whether the overlay's upper layer is a scratch tmpfs (``ContainerSpec/Overlay/Scratch/memory``,
    /// nothing on disk to remove) rather than the `upper`/`work` directories.
    public let scratchInMemory: Bool
    /// Whether it started in its cgroup (clone3 `CLONE_INTO_CGROUP`, cgroup v2) rather than
    /// joining it by writing `cgroup.procs`.
    public let joinedByClone3: Bool
    /// What ``exec(_:)`` gives a process it starts here (nil: not known, exec refused).
    let execProfile: ExecProfile?
    private let started: ContinuousClock.Instant
    private let startedWall: Double
    private let logger: Logger

    private struct State {
        var pidfd: Int32
        var exited = false
        var waited = false
    }
    private let state: Mutex<State>

    init(id: ContainerID, pid: pid_t, pidfd: Int32, cgroup: any TaskCgroup, scratchInMemory: Bool, joinedByClone3: Bool = false,
         execProfile: ExecProfile? = nil, started: ContinuousClock.Instant, startedWall: Double, logger: Logger) {
        self.execProfile = execProfile
        self.joinedByClone3 = joinedByClone3
        self.id = id
        self.pid = pid
        self.cgroup = cgroup
        self.scratchInMemory = scratchInMemory
        self.started = started
        self.startedWall = startedWall
        self.logger = logger
        self.state = Mutex(State(pidfd: pidfd))
    }

    deinit {
        state.withLock { s in
            if s.pidfd >= 0 { close(s.pidfd) }
        }
    }

    /// Removes the container's cgroup (after ``wait(timeout:interruptFD:removeCgroup:onInterrupt:)``
    /// with `removeCgroup: false`).
    public func removeCgroup() {
        do { try cgroup.remove() } catch {
            logger.warning("cannot remove cgroup", metadata: ["container": "\(id.short)", "error": "\(error)"])
        }
    }

    /// Sends `signal` to the container's PID 1 (which, like any PID 1, ignores signals it has no
    /// handler for, except SIGKILL). Does nothing once the container has exited.
    public func signal(_ signal: Int32) {
        state.withLock { s in
            guard !s.exited, s.pidfd >= 0 else { return }
            _ = pl_pidfd_signal(s.pidfd, signal)
        }
    }

    /// Runs `body` with PID 1's pidfd while the container is known not to have been waited for
    /// (the pidfd stays open until `body` returns).
    func withLivePidfd<T>(_ body: (Int32) throws -> T) throws -> T {
        try state.withLock { s in
            guard !s.exited, s.pidfd >= 0 else { throw PropellerError(.unavailable, "container \(id.short) is not running") }
            return try body(s.pidfd)
        }
    }

    /// Kills every process in the container's cgroup (and its PID 1).
    public func killAll() {
        state.withLock { s in
            guard !s.exited else { return }
            do { try cgroup.killAll() } catch { logger.warning("cgroup kill failed", metadata: ["container": "\(id.short)", "error": "\(error)"]) }
            if s.pidfd >= 0 { _ = pl_pidfd_signal(s.pidfd, SIGKILL) }
        }
    }

    /// Sends `signal`, then kills the whole cgroup if the container is still running after `grace`.
    public func stop(signal: Int32 = SIGTERM, grace: Duration = .seconds(10)) {
        self.signal(signal)
        // At most a year: Dispatch converts to nanoseconds, which must not overflow.
        let ms = Int(clamping: min(grace.clampedMilliseconds, 366 * 86_400_000))
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) { [self] in killAll() }
    }

    /// Blocks until the container exits. With `timeout`, kills the whole cgroup when it passes
    /// (``ExitReport/timedOut``). When `interruptFD` is readable (a signal pipe), each byte read
    /// is handed to `onInterrupt` and waiting goes on.
    ///
    /// With `removeCgroup: false` the cgroup (emptied, counters read) stays until
    /// ``removeCgroup()``: removing a v1 cgroup right after its last process exited can wait for
    /// the kernel for tens of milliseconds, which a daemon does after reporting, not before.
    /// What the container uses now (its cgroup's counters and gauges).
    public func usage() -> CgroupUsage { cgroup.usage() }

    public func wait(timeout: Duration? = nil, interruptFD: Int32 = -1, removeCgroup: Bool = true, onInterrupt: (Int32) -> Void = { _ in }) -> ExitReport {
        let pidfd = state.withLock { s -> Int32 in
            precondition(!s.waited, "RunningContainer.wait called twice")
            s.waited = true
            return s.pidfd
        }
        let deadline = timeout.map { started + min($0, .seconds(Int64(1) << 33)) }
        var timedOut = false
        while true {
            var ms: Int32 = -1
            if let deadline, !timedOut {
                ms = Int32(clamping: (deadline - ContinuousClock.now).clampedMilliseconds)
            }
            let r = pl_wait_readable(pidfd, interruptFD, ms)
            if r == 1 { break }
            if r == 0 {
                timedOut = true
                logger.info("container timed out; killing its cgroup", metadata: ["container": "\(id.short)"])
                killAll()
            } else if r == 2 {
                var byte: UInt8 = 0
                while read(interruptFD, &byte, 1) == 1 { onInterrupt(Int32(byte)) }
            } else if errno != EINTR {
                break
            }
        }

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let runtime = ContinuousClock.now - started
        let finishedWall = WallClock.now()
        state.withLock { s in
            s.exited = true
            if s.pidfd >= 0 { close(s.pidfd) }
            s.pidfd = -1
        }

        let stats = cgroup.stats()
        // PID 1 is gone, so the kernel has killed the rest of its pid namespace; anything left
        // in the cgroup would be a leak, so kill it before removing the cgroup.
        try? cgroup.killAll()
        if removeCgroup { self.removeCgroup() }

        let termSignal = status & 0x7f
        let signaled = termSignal != 0 && termSignal != 0x7f
        let exitCode: Int32 = signaled ? 128 + termSignal : (status >> 8) & 0xff
        let report = ExitReport(
            exitCode: exitCode, signal: signaled ? termSignal : nil, oomKilled: stats.oomKills > 0,
            timedOut: timedOut, usage: stats, startedAt: startedWall, finishedAt: finishedWall, runtime: runtime)
        logger.debug("container exited", metadata: ["container": "\(id.short)", "exit": "\(exitCode)", "oom": "\(report.oomKilled)", "timedOut": "\(timedOut)"])
        return report
    }
}
