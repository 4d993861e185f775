import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PropellerCore
import PropellerImage
import PropellerRuntime

/// `propeller run`: one container on this machine, no manager (like `docker run`).
package struct RunCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a new container on this machine.",
        discussion: """
        The container gets new mount, PID, UTS, IPC, network and cgroup namespaces, the given root \
        filesystem (pivot_root), a fresh /proc, a minimal /dev, a read-only /sys, Docker's default \
        capabilities minus NET_RAW, no_new_privs and a seccomp allow-list. stdout and stderr of the \
        command are the caller's own.

        Exit status: the command's exit code; 128+N when signal N killed it; 137 with a message when \
        the memory limit OOM-killed it; 124 when --timeout killed it; 125 when Propeller itself \
        failed (bad flags, setup error); 126 when the command cannot be executed; 127 when it is not \
        found.

        SIZE accepts 64M, 1.5G, 512k (powers of 1024) and plain bytes. DURATION accepts 500ms, 30s, 2m, 1h.
        """
    )

    @Option(help: ArgumentHelp("Root filesystem directory for the container.", valueName: "dir"))
    var rootfs: String?

    @Option(help: ArgumentHelp("Image to run: a registry reference (host[:port]/repo[:tag][@digest]) or oci:DIR[:TAG], an OCI image layout. Its layers are verified, unpacked once and shared read-only; each run writes to its own overlay.", valueName: "ref"))
    var image: String?

    @OptionGroup var images: ImageOptions

    @Option(help: ArgumentHelp("With --image, where the container's writes to its root filesystem go: memory (a private tmpfs, charged to the container's memory and bounded by --memory and --scratch-size, gone with the run) or disk (under --data-dir/runs, removed after the run). Default: memory.", valueName: "memory|disk"))
    var scratch: String?

    @Option(name: .customLong("scratch-size"), help: ArgumentHelp("With --scratch memory, the most the container may write to its root filesystem (default: half the RAM, as any tmpfs).", valueName: "size"))
    var scratchSize: String?

    @Option(help: ArgumentHelp("Memory limit (no swap beyond it).", valueName: "size"))
    var memory: String?

    @Option(help: ArgumentHelp("CPU limit in CPUs, e.g. 0.5 or 2.", valueName: "n"))
    var cpus: String?

    @Option(help: ArgumentHelp("Maximum number of processes and threads.", valueName: "n"))
    var pids: String?

    @Option(help: ArgumentHelp("Kill the whole container after this long (exit status 124).", valueName: "duration"))
    var timeout: String?

    @Option(name: [.short, .customLong("env")], help: ArgumentHelp("Set an environment variable (KEY=VALUE, or KEY to copy it from here).", valueName: "key=value"))
    var env: [String] = []

    @Option(name: [.short, .customLong("workdir")], help: ArgumentHelp("Working directory inside the container (created if missing; default: the image's, or /).", valueName: "dir"))
    var workdir: String?

    @Option(name: [.short, .customLong("user")], help: ArgumentHelp("User to run as: UID[:GID] or NAME[:GROUP], resolved in the rootfs.", valueName: "user"))
    var user: String?

    @Option(help: ArgumentHelp("Container hostname (default: the first 12 digits of its id).", valueName: "name"))
    var hostname: String?

    @Option(help: ArgumentHelp("none: a private network namespace with only loopback; host: the host's network.", valueName: "none|host"))
    var network: String = "none"

    @Option(name: .customLong("cap-add"), help: ArgumentHelp("Add a capability (NET_RAW, SYS_PTRACE, ALL, ...).", valueName: "cap"))
    var capAdd: [String] = []

    @Option(name: .customLong("cap-drop"), help: ArgumentHelp("Drop a capability (or ALL).", valueName: "cap"))
    var capDrop: [String] = []

    @Option(name: [.short, .customLong("volume")], help: ArgumentHelp("Bind a host directory or file into the container (repeatable): nosuid, nodev, private, read-only with :ro; the target is resolved inside the container.", valueName: "/host:/path[:ro]"))
    var volume: [String] = []

    @Option(help: ArgumentHelp("A tmpfs of the container's own, charged to its memory (repeatable).", valueName: "/path[:size=64M]"))
    var tmpfs: [String] = []

    @Flag(name: .customLong("read-only"), help: "Mount the root filesystem read-only.")
    var readOnly = false

    @Option(help: ArgumentHelp("default, unconfined, or a Docker-format JSON profile file.", valueName: "default|unconfined|file"))
    var seccomp: String = "default"

    @Option(help: ArgumentHelp("Resource limit NAME=SOFT[:HARD] (default nofile=1024:1024).", valueName: "name=soft:hard"))
    var ulimit: [String] = []

    @Option(help: ArgumentHelp("Write how the container ended (exit code, signal, OOM, timeout, CPU and memory use) to this file as JSON.", valueName: "file"))
    var report: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "warning"

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments.", valueName: "cmd"))
    var command: [String] = []

    /// `--volume` and `--tmpfs` as mounts: a host path here, as `podman run -v` takes (the
    /// caller is root on this machine; tasks of a cluster name only volumes offered by name).
    func mounts() throws -> [ContainerSpec.Mount] {
        var mounts: [ContainerSpec.Mount] = []
        for text in volume {
            var parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            var readOnly = false
            if parts.count == 3, parts[2] == "ro" || parts[2] == "rw" {
                readOnly = parts.removeLast() == "ro"
            }
            guard parts.count == 2, parts[0].hasPrefix("/") else {
                throw PropellerError(.invalidArgument, "invalid --volume \"\(text)\": expected /HOST:/PATH[:ro]")
            }
            guard access(parts[0], F_OK) == 0 else { throw PropellerError(.notFound, "invalid --volume \"\(text)\": \(parts[0]) does not exist") }
            mounts.append(ContainerSpec.Mount(.bind(parts[0]), at: try MountTarget.check(parts[1], what: "--volume \"\(text)\""), readOnly: readOnly))
        }
        for text in tmpfs {
            let t = try TmpfsMount(parsing: text)
            mounts.append(ContainerSpec.Mount(.tmpfs(sizeBytes: t.sizeBytes), at: t.target))
        }
        try MountTarget.checkDistinct(mounts.map(\.target))
        return mounts
    }

    package func validate() throws {
        if let first = command.first, first == "--help" || first == "-h" {
            throw CleanExit.helpRequest(self)
        }
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option '\(first)'")
        }
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        if (rootfs == nil) == (image == nil) { throw ValidationError("give exactly one of --rootfs DIR and --image REF") }
        if cmd.isEmpty && image == nil { throw ValidationError("no command given: propeller run --rootfs DIR [OPTIONS] [--] CMD [ARG...]") }
        if ContainerSpec.NetworkMode(rawValue: network) == nil {
            throw ValidationError("invalid --network \"\(network)\": expected none or host")
        }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("invalid --log-level \"\(logLevel)\"") }
        if let scratch, scratch != "memory" && scratch != "disk" { throw ValidationError("invalid --scratch \"\(scratch)\": expected memory or disk") }
        if image == nil && (scratch != nil || scratchSize != nil) { throw ValidationError("--scratch and --scratch-size apply to --image runs only") }
        if scratchSize != nil && scratch == "disk" { throw ValidationError("--scratch-size needs --scratch memory") }
    }

    package func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "propeller.run")

        // Compiled seccomp programs are cached in /run/propeller/seccomp (PROPELLER_SECCOMP_CACHE
        // names another directory, or "off").
        let cacheDir = getenv("PROPELLER_SECCOMP_CACHE").map { String(cString: $0) } ?? SeccompCache.defaultDirectory
        let cache = cacheDir == "off" || cacheDir.isEmpty ? nil : SeccompCache(directory: cacheDir)
        // With an image, the runtime (cgroup layout, seccomp cache) is set up on another thread
        // while the image is looked up: the one waits on the kernel, the other decodes JSON.
        let runtimeSetup = image == nil ? nil : Concurrently { try ContainerRuntime(seccompCache: cache, logger: logger) }
        defer { runtimeSetup?.finish() }

        var spec: ContainerSpec
        let timeoutDuration: Duration?
        var runDirectory: RunDirectory?
        defer { runDirectory?.remove() }
        do {
            spec = try makeSpec()
            if let image {
                runDirectory = try prepareImage(image, spec: &spec, logger: logger)
            }
            timeoutDuration = try timeout.map(DurationParsing.parse)
            if let t = timeoutDuration, t <= .zero { throw PropellerError(.invalidArgument, "invalid --timeout \"\(timeout ?? "")\": must be positive") }
        } catch let error as PropellerError {
            if error.code == .invalidArgument { throw ValidationError(error.message) }
            printError("propeller: \(error.message)")
            throw ExitCode(125)
        }

        let runtime: ContainerRuntime
        let container: RunningContainer
        do {
            runtime = try runtimeSetup?.value() ?? ContainerRuntime(seccompCache: cache, logger: logger)
            container = try runtime.start(spec)
            // A scratch tmpfs goes with the container's mount namespace: nothing on disk.
            if container.scratchInMemory { runDirectory = nil }
        } catch let error as LaunchError {
            printError("propeller: \(error)")
            throw ExitCode(error.exitStatus)
        } catch {
            printError("propeller: \(error)")
            throw ExitCode(125)
        }
        // Forward the usual terminal signals to the container (like docker run's sig-proxy).
        let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
        let signalFD = SignalPipe.install(forwarded)
        let runReport = container.wait(timeout: timeoutDuration, interruptFD: signalFD, removeCgroup: false) { sig in
            container.signal(sig)
        }
        // The run directory and the cgroups go at the same time: both wait on the kernel (the
        // filesystem's journal, the release of a v1 cgroup), not on this process.
        let removal = runDirectory.map { run in Concurrently { run.remove() } }
        runDirectory = nil
        defer { removal?.finish() }
        container.removeCgroup()
        runtime.shutdown()
        if let report {
            do {
                try ReportFile.save(self.report(for: runReport, spec: spec, joinedByClone3: container.joinedByClone3), to: report)
            } catch {
                printError("propeller: cannot write --report \(report): \(error)")
            }
        }
        if runReport.timedOut {
            printError("propeller: container timed out after \(timeout ?? "") and was killed (exit status 124)")
            throw ExitCode(124)
        }
        if runReport.oomKilled && runReport.signal == SIGKILL {
            let limit = spec.limits.memoryBytes.map { " of \(ByteSize(bytes: $0))" } ?? ""
            printError("propeller: container was killed by the kernel's OOM killer: memory limit\(limit) exceeded (exit status 137)")
            throw ExitCode(137)
        }
        throw ExitCode(runReport.exitCode)
    }

    private func report(for r: ExitReport, spec: ContainerSpec, joinedByClone3: Bool) -> ReportFile {
        ReportFile(id: spec.id.hex, exitCode: r.exitCode, signal: r.signal, oomKilled: r.oomKilled, timedOut: r.timedOut,
                   startedAt: r.startedAt, finishedAt: r.finishedAt, runtimeSeconds: Double(r.runtime.components.seconds) + Double(r.runtime.components.attoseconds) / 1e18,
                   cpuUsec: r.usage.cpuUsageMicros, memoryPeakBytes: r.usage.memoryPeakBytes, throttledPeriods: r.usage.throttledPeriods,
                   throttledUsec: r.usage.throttledMicros, oomKills: r.usage.oomKills, cgroupJoin: joinedByClone3 ? "clone3" : "cgroup.procs")
    }

    func makeSpec() throws -> ContainerSpec {
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        var spec = ContainerSpec(rootfs: rootfs.map(absolutePath) ?? "", command: cmd)
        spec.killWithParent = true
        var limits = CgroupLimits()
        if let memory {
            guard let size = try? ByteSize(parsing: memory) else {
                throw PropellerError(.invalidArgument, "invalid --memory \"\(memory)\": expected a size like 64M, 1.5G, 512k or a number of bytes")
            }
            guard size.bytes >= 6 << 20 else { throw PropellerError(.invalidArgument, "invalid --memory \"\(memory)\": the minimum is 6M") }
            limits.memoryBytes = size.bytes
        }
        if let cpus {
            guard let value = Double(cpus), value.isFinite, value > 0, value <= 4096 else {
                throw PropellerError(.invalidArgument, "invalid --cpus \"\(cpus)\": expected a positive number of CPUs, like 0.5 or 2")
            }
            limits.cpuMillis = UInt64((value * 1000).rounded())
            if limits.cpuMillis == 0 { throw PropellerError(.invalidArgument, "invalid --cpus \"\(cpus)\": the minimum is 0.01") }
        }
        if let pids {
            guard let value = UInt64(pids), value > 0 else {
                throw PropellerError(.invalidArgument, "invalid --pids \"\(pids)\": expected a positive whole number")
            }
            limits.pids = value
        }
        spec.limits = limits
        spec.environment = env.map { entry in
            if entry.contains("=") { return entry }
            if let value = getenv(entry) { return entry + "=" + String(cString: value) }
            return entry + "="
        }
        for entry in spec.environment where entry.hasPrefix("=") {
            throw PropellerError(.invalidArgument, "invalid --env \"\(entry)\": missing name")
        }
        spec.workingDirectory = workdir ?? "/"
        spec.user = user
        spec.hostname = hostname
        spec.network = ContainerSpec.NetworkMode(rawValue: network) ?? .none
        spec.capabilities = try CapabilitySet.defaultSet.adjusted(adding: capAdd, dropping: capDrop)
        spec.readOnlyRootfs = readOnly
        spec.mounts = try mounts()
        switch seccomp {
        case "default": spec.seccomp = .default
        case "unconfined": spec.seccomp = .unconfined
        default: spec.seccomp = .profile(try SeccompProfile.load(path: seccomp))
        }
        var limitsByResource: [Int32: ContainerSpec.ResourceLimit] = [ContainerSpec.ResourceLimit.defaultNofile.resource: .defaultNofile]
        for u in ulimit {
            let parsed = try ContainerSpec.ResourceLimit(parsing: u)
            limitsByResource[parsed.resource] = parsed
        }
        spec.resourceLimits = limitsByResource.keys.sorted().compactMap { limitsByResource[$0] }
        return spec
    }

    /// --scratch and --scratch-size as the overlay's upper layer.
    private func scratchLayer() throws -> ContainerSpec.Overlay.Scratch {
        guard scratch ?? "memory" == "memory" else { return .directories }
        guard let scratchSize else { return .memory(sizeBytes: nil) }
        guard let size = try? ByteSize(parsing: scratchSize), size.bytes > 0 else {
            throw PropellerError(.invalidArgument, "invalid --scratch-size \"\(scratchSize)\": expected a size like 64M, 1.5G, 512k or a number of bytes")
        }
        return .memory(sizeBytes: size.bytes)
    }

    /// Imports `oci:DIR[:TAG]` into the data directory, unpacks it once, and points `spec` at an
    /// overlay of it (or a copy when the kernel has no overlayfs). Applies the image config:
    /// Entrypoint + Cmd (arguments replace Cmd), Env (flags win), WorkingDir and User (flags win).
    private func prepareImage(_ reference: String, spec: inout ContainerSpec, logger: Logger) throws -> RunDirectory {
        let store = try images.store()
        let image = try images.runnable(reference, store: store)
        let lower = image.rootfs
        // The overlay's own directories are made by the runtime while it prepares the rest.
        let run = try RunDirectory.create(dataDirectory: images.dataDir, id: spec.id, layers: false)
        if run.overlay {
            spec.rootfs = run.merged
            spec.overlay = ContainerSpec.Overlay(lower: [lower], upper: run.upper, work: run.work, scratch: try scratchLayer())
        } else {
            logger.warning("overlayfs is not available: copying the image's rootfs for this run")
            guard system("cp -a '\(lower)/.' '\(run.merged)/'") == 0 else {
                run.remove()
                throw PropellerError(.systemCall, "copy \(lower) for the run failed")
            }
            spec.rootfs = run.merged
        }
        spec.command = try image.defaults.command(arguments: spec.command)
        spec.environment = image.defaults.environment + spec.environment
        if workdir == nil, let dir = image.defaults.workingDirectory { spec.workingDirectory = dir }
        if user == nil { spec.user = image.defaults.user }
        return run
    }


}
