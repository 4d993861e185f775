#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore
import Synchronization

/// What a process started in a running container inherits from its start: the identity,
/// capabilities, limits, seccomp filter and environment its PID 1 was given. Kept with the
/// ``RunningContainer`` so that ``RunningContainer/exec(_:)`` can never give more.
struct ExecProfile: Sendable {
    var uid: UInt32
    var gid: UInt32
    var groups: [UInt32]
    var capabilities: UInt64
    var seccomp: SeccompProgram?
    var environment: [String]
    var workingDirectory: String
    var resourceLimits: [ContainerSpec.ResourceLimit]
    var killWithParent: Bool
}

/// A process to start in a running container (`propeller task exec`).
public struct ExecRequest: Sendable {
    /// argv; a command without `/` is looked up on the task's PATH inside the container.
    public var command: [String]
    /// Entries added after the task's own environment (later ones win).
    public var environment: [String]
    /// Inside the container; nil: the task's working directory.
    public var workingDirectory: String?
    /// stdin is a terminal (a pty's follower end): it becomes the process's controlling terminal.
    public var terminal: Bool
    /// The descriptors that become its 0, 1 and 2.
    public var stdio: [Int32]

    public init(command: [String], environment: [String] = [], workingDirectory: String? = nil, terminal: Bool = false, stdio: [Int32]) {
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.terminal = terminal
        self.stdio = stdio
    }
}

/// A process started in a running container by ``RunningContainer/exec(_:)``: a child of the
/// caller, inside the container's pid namespace (the kernel kills it when the container's PID 1
/// exits). Call ``wait()`` on a thread of its own right away: the container's PID 1 does not
/// finish exiting (its pidfd does not report it) while this process is an unreaped child here.
public final class ExecProcess: Sendable {
    /// Its pid in the caller's pid namespace.
    public let pid: pid_t
    private let pidfd: Mutex<Int32>

    init(pid: pid_t, pidfd: Int32) {
        self.pid = pid
        self.pidfd = Mutex(pidfd)
    }

    deinit {
        pidfd.withLock { fd in if fd >= 0 { close(fd) } }
    }

    /// Sends `signal` to it (nothing once it has been reaped).
    public func signal(_ signal: Int32) {
        pidfd.withLock { fd in if fd >= 0 { _ = pl_pidfd_signal(fd, signal) } }
    }

    /// Blocks until it exits and reaps it: the exit code, or 128 + N when signal N killed it.
    public func wait() -> Int32 {
        let fd = pidfd.withLock { $0 }
        while fd >= 0 {
            let r = pl_wait_readable(fd, -1, -1)
            if r == 1 || (r < 0 && errno != EINTR) { break }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pidfd.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
        let termSignal = status & 0x7f
        return termSignal != 0 && termSignal != 0x7f ? 128 + termSignal : (status >> 8) & 0xff
    }
}

extension RunningContainer {
    /// Starts `request` inside this container: its namespaces, cgroup, root, user, capabilities,
    /// rlimits, no_new_privs and seccomp filter, as its PID 1 got them (never more). Throws
    /// ``LaunchError`` when a step fails (a missing command: stage `exec`, ENOENT), or when the
    /// container is no longer running.
    public func exec(_ request: ExecRequest) throws -> ExecProcess {
        guard let profile = execProfile else {
            throw PropellerError(.unsupported, "container \(id.short) was started without what exec needs")
        }
        guard !request.command.isEmpty, !request.command[0].isEmpty else { throw PropellerError(.invalidArgument, "no command given") }
        if let dir = request.workingDirectory, !dir.hasPrefix("/") {
            throw PropellerError(.invalidArgument, "working directory \(dir): must be an absolute path")
        }
        return try withLivePidfd { pidfd in
            // Opened before the pidfd is asked whether PID 1 lives: if it was reaped (and its pid
            // reused) in between, the check fails.
            let rootFD = open("/proc/\(pid)/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard rootFD >= 0 else { throw PropellerError(.unavailable, "container \(id.short) is not running") }
            defer { close(rootFD) }
            guard pl_pidfd_signal(pidfd, 0) == 0 else { throw PropellerError(.unavailable, "container \(id.short) is not running") }

            var cgroupFDs: [Int32] = []
            let cgroupDirFD: Int32 = ContainerRuntime.joinByClone3 ? cgroup.cloneIntoDirectory.map { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } ?? -1 : -1
            defer {
                for fd in cgroupFDs { close(fd) }
                if cgroupDirFD >= 0 { close(cgroupDirFD) }
            }
            for file in cgroup.joinFiles {
                let fd = open(file, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw FileIO.systemError("open", file) }
                cgroupFDs.append(fd)
            }
            var environment = profile.environment
            for entry in request.environment {
                let key = entry.prefix { $0 != "=" }
                environment.removeAll { $0.prefix { $0 != "=" } == key }
                environment.append(entry)
            }
            let searchPath = environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? ContainerSpec.defaultPath

            let plan = LaunchPlan()
            guard plan.hasStack else { throw FileIO.systemError("mmap", "launcher stack") }
            let s = plan.spec
            s.pointee.argv = plan.stringArray(request.command)
            s.pointee.envp = plan.stringArray(environment)
            s.pointee.search_path = plan.string(searchPath)
            s.pointee.workdir = plan.string(request.workingDirectory ?? profile.workingDirectory)
            s.pointee.uid = profile.uid
            s.pointee.gid = profile.gid
            s.pointee.groups = plan.array(profile.groups)
            s.pointee.ngroups = profile.groups.count
            s.pointee.caps_keep = profile.capabilities
            s.pointee.cap_last = Int32(Capabilities.lastCapability)
            s.pointee.rlimits = plan.array(profile.resourceLimits.map { pl_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) })
            s.pointee.nrlimits = profile.resourceLimits.count
            s.pointee.cgroup_fds = plan.array(cgroupFDs)
            s.pointee.ncgroup_fds = cgroupFDs.count
            s.pointee.cgroup_dir_fd = cgroupDirFD
            s.pointee.seccomp_prog = profile.seccomp.map { UnsafePointer($0.program) }
            var flags: Int32 = 0
            if profile.killWithParent { flags |= Int32(PL_KILL_WITH_PARENT) }
            if request.terminal { flags |= Int32(PL_EXEC_TTY) }
            s.pointee.flags = flags
            s.pointee.netns_fd = -1
            s.pointee.overlay_fd = -1
            s.pointee.exec_target_pidfd = pidfd
            s.pointee.exec_root_fd = rootFD
            s.pointee.stdio = (request.stdio.count > 0 ? request.stdio[0] : -1, request.stdio.count > 1 ? request.stdio[1] : -1,
                               request.stdio.count > 2 ? request.stdio[2] : -1)
            var processFD: Int32 = -1
            let started = pl_exec(s, &processFD)
            withExtendedLifetime(profile.seccomp) {}
            if s.pointee.err_stage != 0 {
                let failure = LaunchError(stageCode: s.pointee.err_stage, errno: s.pointee.err_errno,
                                          detail: withUnsafeBytes(of: s.pointee.err_detail) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
                if started > 0 {
                    var status: Int32 = 0
                    while waitpid(started, &status, 0) < 0 && errno == EINTR {}
                }
                if processFD >= 0 { close(processFD) }
                throw failure
            }
            return ExecProcess(pid: started, pidfd: processFD)
        }
    }
}

/// A pseudo-terminal pair for an exec with a terminal: the follower end becomes the process's
/// stdio and controlling terminal, the leader end is what its supervisor reads and writes.
public enum PseudoTerminal {
    /// Opens a pair (both close-on-exec) sized `rows` × `cols` (0 × 0: the kernel's default).
    public static func open(rows: Int, cols: Int) throws -> (leader: Int32, follower: Int32) {
        var leader: Int32 = -1
        var follower: Int32 = -1
        guard pl_openpty(&leader, &follower, UInt16(clamping: rows), UInt16(clamping: cols)) == 0 else {
            throw FileIO.systemError("open a pseudo-terminal", "/dev/ptmx")
        }
        return (leader, follower)
    }

    /// The size of the terminal `fd` is, or nil when it is none.
    public static func size(of fd: Int32) -> (rows: Int, cols: Int)? {
        var rows: UInt16 = 0
        var cols: UInt16 = 0
        guard pl_get_window_size(fd, &rows, &cols) == 0, rows > 0, cols > 0 else { return nil }
        return (Int(rows), Int(cols))
    }

    /// Sets the terminal's size (the process gets SIGWINCH).
    public static func resize(_ fd: Int32, rows: Int, cols: Int) {
        _ = pl_set_window_size(fd, UInt16(clamping: rows), UInt16(clamping: cols))
    }
}
