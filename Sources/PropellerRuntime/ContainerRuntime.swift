#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import Logging
import PropellerCore
import Synchronization

/// Starts containers: the library behind `propeller run` and the proplet.
///
/// One runtime per process. It detects the host's cgroup layout once and compiles each seccomp
/// profile once, so starting a container costs a cgroup, a clone and the child's syscalls.
public final class ContainerRuntime: Sendable {
    public let cgroups: any CgroupDriver
    /// Prepared network namespaces for `--network none` containers (nil: create one per start).
    public let networkPool: NetworkNamespacePool?
    /// Where compiled seccomp programs are kept between processes (nil: compile in each process).
    public let seccompCache: SeccompCache?
    /// Whether overlays are mounted with the mount API (fsopen/fsmount, detached, while the rest
    /// is prepared) rather than by the child with mount(2). Kernels before 5.2, and seccomp
    /// filters that refuse fsopen, get mount(2) either way.
    public let overlayMountAPI: Bool
    /// How a scratch tmpfs is given to overlayfs, tried in order (tests pick one).
    let scratchMethods: [ContainerSpec.Overlay.ScratchMethod]
    private let logger: Logger
    private let compiledPrograms = Mutex<[SeccompKey: SeccompProgram]>([:])

    private struct SeccompKey: Hashable {
        var policy: ContainerSpec.SeccompPolicy
        var capabilities: UInt64
    }

    /// - Parameters:
    ///   - cgroups: the driver to use; nil picks the one for this host.
    ///   - networkNamespacePool: how many network namespaces to keep prepared (0: none). Worth it
    ///     for a long-lived process that starts many containers; a one-shot CLI gains nothing.
    ///   - seccompCache: a cache of compiled seccomp programs on disk; worth it for a one-shot CLI.
    ///   - overlayMountAPI: see ``overlayMountAPI``.
    public convenience init(cgroups: (any CgroupDriver)? = nil, networkNamespacePool: Int = 0, seccompCache: SeccompCache? = nil,
                            overlayMountAPI: Bool = true, logger: Logger = Logger(label: "propeller.runtime")) throws {
        try self.init(cgroups: cgroups, networkNamespacePool: networkNamespacePool, seccompCache: seccompCache,
                      overlayMountAPI: overlayMountAPI, scratchMethods: ContainerSpec.Overlay.ScratchMethod.allCases, logger: logger)
    }

    init(cgroups: (any CgroupDriver)?, networkNamespacePool: Int, seccompCache: SeccompCache?, overlayMountAPI: Bool,
         scratchMethods: [ContainerSpec.Overlay.ScratchMethod], logger: Logger) throws {
        self.seccompCache = seccompCache
        self.overlayMountAPI = overlayMountAPI
        self.scratchMethods = scratchMethods
        self.cgroups = try cgroups ?? CgroupDrivers.forHost()
        self.networkPool = networkNamespacePool > 0 ? NetworkNamespacePool(size: networkNamespacePool) : nil
        self.logger = logger
    }

    deinit { cgroups.removeEmptyBases() }

    /// Removes the runtime's empty cgroup base directories. Call before exiting a process that
    /// never runs deinitializers (a CLI that calls exit()).
    public func shutdown() { cgroups.removeEmptyBases() }

    /// The compiled filter for `policy` and `capabilities` (nil for `.unconfined`), compiled on first use.
    public func seccompProgram(_ policy: ContainerSpec.SeccompPolicy, capabilities: CapabilitySet) throws -> SeccompProgram? {
        let profile: SeccompProfile
        switch policy {
        case .unconfined: return nil
        case .default: profile = .defaultProfile
        case .profile(let p): profile = p
        }
        let key = SeccompKey(policy: policy, capabilities: capabilities.mask)
        if let cached = compiledPrograms.withLock({ $0[key] }) { return cached }
        let program = try seccompCache.map { try $0.program(profile: profile, capabilities: capabilities) }
            ?? SeccompProgram(profile: profile, capabilities: capabilities)
        return compiledPrograms.withLock { cache in
            if let raced = cache[key] { return raced }
            cache[key] = program
            return program
        }
    }

    /// Creates the container's cgroup, launches its process and returns once the command is
    /// running (exec succeeded). Throws ``LaunchError`` when setup or exec failed, with the
    /// cgroup already removed.
    /// A new network namespace with loopback up, for a container to join
    /// (``ContainerSpec/networkNamespace``); the caller closes the descriptor.
    public static func makeNetworkNamespace() throws -> Int32 {
        let fd = pl_netns_create()
        guard fd >= 0 else { throw FileIO.systemError("create a network namespace", "") }
        return fd
    }

    public func start(_ spec: ContainerSpec) throws -> RunningContainer {
        guard !spec.command.isEmpty else { throw PropellerError(.invalidArgument, "no command given") }
        guard spec.rootfs.hasPrefix("/") else { throw PropellerError(.invalidArgument, "rootfs \(spec.rootfs): must be an absolute path") }
        guard FileIO.isDirectory(spec.rootfs) else {
            throw PropellerError(.notFound, "rootfs \(spec.rootfs): no such directory")
        }
        guard spec.workingDirectory.hasPrefix("/") else {
            throw PropellerError(.invalidArgument, "working directory \(spec.workingDirectory): must be an absolute path")
        }
        // An overlay is mounted (detached) on another thread while this one resolves the user,
        // the seccomp filter and the cgroups; the child only attaches it. Mounting costs ~0.1 ms
        // on a scratch tmpfs, ~0.5 ms on disk (overlayfs probes its work directory).
        let overlayOptions = try spec.overlay?.mountOptions()
        let overlayMount = overlayMountAPI ? spec.overlay.map { overlay in Concurrently { [logger, scratchMethods, rootfs = spec.rootfs] in
            try overlay.mountDetached(on: rootfs, scratchMethods: scratchMethods, logger: logger)
        } } : nil
        if !overlayMountAPI { try spec.overlay?.makeDirectories() }
        defer {
            if let detached = try? overlayMount?.value() { close(detached.fd) }
        }
        // With an overlay the rootfs directory is empty until the child mounts it: read users
        // from the top lower layer, which holds the image's files.
        let user = try UserResolver(rootfs: spec.overlay?.lower.first ?? spec.rootfs).resolve(spec.user)
        let seccomp = try seccompProgram(spec.seccomp, capabilities: spec.capabilities)
        let hostname = spec.hostname ?? spec.id.short
        let environment = Self.environment(spec.environment, hostname: hostname, home: user.home)
        let searchPath = environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? ContainerSpec.defaultPath

        let cgroup = try cgroups.create(name: spec.id.hex, limits: spec.limits)
        var cgroupFDs: [Int32] = []
        // v2: the child starts in its cgroup (clone3), with cgroup.procs as the fallback.
        let cgroupDirFD: Int32 = Self.joinByClone3 ? cgroup.cloneIntoDirectory.map { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } ?? -1 : -1
        defer {
            for fd in cgroupFDs { close(fd) }
            if cgroupDirFD >= 0 { close(cgroupDirFD) }
        }
        var overlay: ContainerSpec.Overlay.Detached?
        do {
            for file in cgroup.joinFiles {
                let fd = open(file, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw FileIO.systemError("open", file) }
                cgroupFDs.append(fd)
            }
            // nil: no mount API here (the directories are made); the child mounts the overlay.
            overlay = try overlayMount?.value() ?? nil
        } catch {
            try? cgroup.remove()
            throw error
        }

        let plan = LaunchPlan()
        guard plan.hasStack else {
            try? cgroup.remove()
            throw FileIO.systemError("mmap", "launcher stack")
        }
        let s = plan.spec
        s.pointee.mounts = plan.array(spec.mounts.map { m -> pl_mount in
            switch m.source {
            case .bind(let path): pl_mount(source: plan.string(path), target: plan.string(m.target), tmpfs_size: 0, readonly: m.readOnly ? 1 : 0,
                                           is_file: 0, file_data: nil, file_size: 0)
            case .tmpfs(let size): pl_mount(source: nil, target: plan.string(m.target), tmpfs_size: size ?? 0, readonly: m.readOnly ? 1 : 0,
                                            is_file: 0, file_data: nil, file_size: 0)
            case .file(let bytes): pl_mount(source: nil, target: plan.string(m.target), tmpfs_size: 0, readonly: 1, is_file: 1,
                                            file_data: UnsafeRawPointer(plan.secret(bytes)), file_size: bytes.count)
            }
        })
        s.pointee.nmounts = spec.mounts.count
        s.pointee.rootfs = plan.string(spec.rootfs)
        s.pointee.overlay_fd = overlay?.fd ?? -1
        s.pointee.overlay_options = overlay == nil ? overlayOptions.map(plan.string) : nil
        s.pointee.argv = plan.stringArray(spec.command)
        s.pointee.envp = plan.stringArray(environment)
        s.pointee.search_path = plan.string(searchPath)
        s.pointee.workdir = plan.string(spec.workingDirectory)
        s.pointee.hostname = plan.string(hostname)
        s.pointee.uid = user.uid
        s.pointee.gid = user.gid
        s.pointee.groups = plan.array(user.additionalGroups)
        s.pointee.ngroups = user.additionalGroups.count
        s.pointee.caps_keep = spec.capabilities.mask
        s.pointee.cap_last = Int32(Capabilities.lastCapability)
        s.pointee.rlimits = plan.array(spec.resourceLimits.map { pl_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) })
        s.pointee.nrlimits = spec.resourceLimits.count
        s.pointee.cgroup_fds = plan.array(cgroupFDs)
        s.pointee.ncgroup_fds = cgroupFDs.count
        s.pointee.cgroup_dir_fd = cgroupDirFD
        s.pointee.seccomp_prog = seccomp.map { UnsafePointer($0.program) }
        s.pointee.masked_paths = plan.constStringArray(spec.maskedPaths)
        s.pointee.nmasked_paths = spec.maskedPaths.count
        s.pointee.readonly_paths = plan.constStringArray(spec.readonlyPaths)
        s.pointee.nreadonly_paths = spec.readonlyPaths.count
        var flags: Int32 = 0
        if spec.network == .none { flags |= Int32(PL_NEW_NETWORK) }
        if spec.readOnlyRootfs { flags |= Int32(PL_READONLY_ROOT) }
        if spec.killWithParent { flags |= Int32(PL_KILL_WITH_PARENT) }
        s.pointee.flags = flags
        let netnsFD: Int32 = spec.network == .none && spec.networkNamespace == nil ? (networkPool?.take() ?? -1) : -1
        defer { if netnsFD >= 0 { close(netnsFD) } }
        s.pointee.netns_fd = spec.network == .none ? (spec.networkNamespace ?? netnsFD) : -1
        s.pointee.stdio = (spec.stdio.count > 0 ? spec.stdio[0] : -1, spec.stdio.count > 1 ? spec.stdio[1] : -1, spec.stdio.count > 2 ? spec.stdio[2] : -1)

        let wallStart = WallClock.now()
        let started = ContinuousClock.now
        var pidfd: Int32 = -1
        let pid = pl_launch(s, &pidfd)
        let failure: LaunchError? = s.pointee.err_stage == 0 ? nil : LaunchError(
            stageCode: s.pointee.err_stage, errno: s.pointee.err_errno,
            detail: withUnsafeBytes(of: s.pointee.err_detail) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        withExtendedLifetime(seccomp) {}

        if let failure {
            if pid > 0 {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            }
            if pidfd >= 0 { close(pidfd) }
            try? cgroup.killAll()
            try? cgroup.remove()
            logger.debug("container failed to start", metadata: ["container": "\(spec.id.short)", "error": "\(failure)"])
            throw failure
        }
        let joinedByClone3 = s.pointee.joined_by_clone3 != 0
        logger.debug("container started", metadata: ["container": "\(spec.id.short)", "pid": "\(pid)", "cgroup_join": "\(joinedByClone3 ? "clone3" : "cgroup.procs")"])
        let profile = ExecProfile(uid: user.uid, gid: user.gid, groups: user.additionalGroups, capabilities: spec.capabilities.mask, seccomp: seccomp,
                                  environment: environment, workingDirectory: spec.workingDirectory, resourceLimits: spec.resourceLimits,
                                  killWithParent: spec.killWithParent)
        return RunningContainer(id: spec.id, pid: pid, pidfd: pidfd, cgroup: cgroup, scratchInMemory: overlay?.inMemory ?? false,
                                joinedByClone3: joinedByClone3, execProfile: profile, started: started, startedWall: wallStart, logger: logger)
    }

    /// Whether a v2 child starts in its cgroup (clone3 `CLONE_INTO_CGROUP`) when the kernel has
    /// it. `PROPELLER_CGROUP_JOIN=procs` makes it join by writing `cgroup.procs` instead: for
    /// comparisons, and as a way out should a kernel or a filter around this process mishandle
    /// clone3 in a way the fallback does not catch.
    static let joinByClone3 = getenv("PROPELLER_CGROUP_JOIN").map { String(cString: $0) } != "procs"

    /// PATH, HOSTNAME and HOME defaults, then the task's own entries (later ones win).
    static func environment(_ entries: [String], hostname: String, home: String) -> [String] {
        var order: [String] = []
        var values: [String: String] = [:]
        func set(_ entry: String) {
            let key = String(entry.prefix { $0 != "=" })
            if values[key] == nil { order.append(key) }
            values[key] = entry
        }
        set("PATH=" + ContainerSpec.defaultPath)
        set("HOSTNAME=" + hostname)
        set("HOME=" + home)
        for e in entries { set(e) }
        return order.compactMap { values[$0] }
    }
}
