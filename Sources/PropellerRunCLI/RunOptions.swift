#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Logging
import PropellerCore
import PropellerImage
import PropellerRuntime

/// Everything `propeller run` takes, as plain values, and the run itself. ``RunCommand`` (the
/// ArgumentParser form, for help and usage errors) and the quick parse
/// (``init(quickParsing:)``, the usual command line without ArgumentParser's reflection) both
/// make one.
package struct RunOptions: Equatable, Sendable {
    package var rootfs: String?
    package var image: String?
    package var images = ImageSettings()
    package var scratch: String?
    package var scratchSize: String?
    package var memory: String?
    package var cpus: String?
    package var pids: String?
    package var timeout: String?
    package var env: [String] = []
    package var workdir: String?
    package var user: String?
    package var hostname: String?
    package var network = "none"
    package var capAdd: [String] = []
    package var capDrop: [String] = []
    package var volume: [String] = []
    package var tmpfs: [String] = []
    package var readOnly = false
    package var seccomp = "default"
    package var ulimit: [String] = []
    package var report: String?
    package var logLevel = "warning"
    /// The command and its arguments (without a leading `--`).
    package var command: [String] = []

    package init() {}

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

    /// The checks of the flags together (ArgumentParser's `validate`).
    package func validate() throws {
        if (rootfs == nil) == (image == nil) { throw ValidationError("give exactly one of --rootfs DIR and --image REF") }
        if command.isEmpty && image == nil { throw ValidationError("no command given: propeller run --rootfs DIR [OPTIONS] [--] CMD [ARG...]") }
        if ContainerSpec.NetworkMode(rawValue: network) == nil {
            throw ValidationError("invalid --network \"\(network)\": expected none or host")
        }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("invalid --log-level \"\(logLevel)\"") }
        if let scratch, scratch != "memory" && scratch != "disk" { throw ValidationError("invalid --scratch \"\(scratch)\": expected memory or disk") }
        if image == nil && (scratch != nil || scratchSize != nil) { throw ValidationError("--scratch and --scratch-size apply to --image runs only") }
        if scratchSize != nil && scratch == "disk" { throw ValidationError("--scratch-size needs --scratch memory") }
    }

    /// Runs the container on this thread and throws its exit status as an `ExitCode`.
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
        var spec = ContainerSpec(rootfs: rootfs.map(absolutePath) ?? "", command: command)
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
        // One limit per resource, the last given winning, in resource order.
        var resourceLimits: [ContainerSpec.ResourceLimit] = [.defaultNofile]
        for u in ulimit {
            let parsed = try ContainerSpec.ResourceLimit(parsing: u)
            resourceLimits.removeAll { $0.resource == parsed.resource }
            resourceLimits.append(parsed)
        }
        spec.resourceLimits = resourceLimits.sorted { $0.resource < $1.resource }
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
