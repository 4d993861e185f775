#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PropellerCore
import PropellerImage
import PropellerRuntime

/// One attempt of a task on this proplet, shared between the agent (which may stop it) and the
/// thread that runs it (pull, unpack, start, wait).
final class Execution: @unchecked Sendable {
    let start: StartTask
    let containerID: ContainerID
    /// The image, when already known (an actor worker's): no lookup on the start path.
    let image: Image?
    /// Run directory and journal on the scratch tmpfs (actor executions).
    let onScratch: Bool
    private let lock = NSLock()
    private var container: RunningContainer?
    private var stopRequest: (signal: Int32, grace: Double)?
    /// When it was accepted and reached each phase (wall clock), for its trace.
    let acceptedAt = WallClock.now()
    private var phaseTimes: [TaskEvent.Phase: Double] = [:]

    init(start: StartTask, containerID: ContainerID = ContainerID(), image: Image? = nil, onScratch: Bool = false) {
        self.start = start
        self.containerID = containerID
        self.image = image
        self.onScratch = onScratch
    }

    /// Hands over the started container; returns a stop that arrived before it existed.
    func attach(_ c: RunningContainer) -> (signal: Int32, grace: Double)? {
        lock.lock()
        defer { lock.unlock() }
        container = c
        return stopRequest
    }

    func requestStop(signal: Int32, grace: Double) {
        lock.lock()
        stopRequest = stopRequest ?? (signal, grace)
        let c = container
        lock.unlock()
        c?.stop(signal: signal, grace: .saturating(seconds: min(grace, InputLimits.graceSeconds.upperBound)))
    }

    /// What the container uses now; nil before it started.
    func usage() -> CgroupUsage? {
        lock.lock()
        let c = container
        lock.unlock()
        return c?.usage()
    }

    private var lastPullReport = ContinuousClock.now - .seconds(10)

    /// Whether a second has passed since the last pull report (and so one is due now).
    func pullReportDue() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard ContinuousClock.now - lastPullReport >= .seconds(1) else { return false }
        lastPullReport = .now
        return true
    }

    func notePhase(_ phase: TaskEvent.Phase) {
        lock.lock()
        phaseTimes[phase] = phaseTimes[phase] ?? WallClock.now()
        lock.unlock()
    }

    var phases: [TaskEvent.Phase: Double] {
        lock.lock()
        defer { lock.unlock() }
        return phaseTimes
    }

    /// Starts a process inside the running container (``RunningContainer/exec(_:)``).
    func exec(_ request: ExecRequest) throws -> ExecProcess {
        lock.lock()
        let c = container
        lock.unlock()
        guard let c else { throw PropellerError(.unavailable, "task \(start.taskId) has not started its container yet") }
        return try c.exec(request)
    }

    var stopRequested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequest != nil
    }
}

/// Runs an ``Execution`` to its end. Blocking: call on a thread of its own.
struct TaskRunner: Sendable {
    let propletID: String
    let images: ImageStore
    let dataDirectory: String
    /// The tmpfs for actor executions, when the proplet has one.
    let scratch: ScratchSpace?
    let runtime: ContainerRuntime
    let registryClient: @Sendable () throws -> RegistryClient
    /// Set for `--image-source proxy`.
    let proxy: ProxyImageSource?
    let tailBytes: Int
    /// `.copy`: every run copies the image's rootfs instead of mounting an overlay.
    let rootfsMode: PropletOptions.RootfsMode
    let volumes: PropletVolumes
    /// Where tasks' `--output` directories are kept, and their limit.
    let outputs: TaskOutputs
    /// nil: this proplet offers no CNI network.
    let networks: CNINetworks?
    let logger: Logger

    /// Callbacks to the agent.
    struct Hooks: Sendable {
        var phase: @Sendable (TaskEvent.Phase) -> Void
        var log: @Sendable (LogBlock.Stream, UInt64, [UInt8]) -> Void
        /// Called with the run's writable root (the overlay's upper directory) before the
        /// container starts: what it writes there, the container sees.
        var prepare: (@Sendable (String) throws -> Void)? = nil
        /// Called with the same directory after the container ended, before it is removed.
        var collect: (@Sendable (String) -> Void)? = nil
        /// Bytes received and to receive while the image is pulled.
        var pullProgress: (@Sendable (UInt64, UInt64) -> Void)? = nil
    }

    /// Pulls (when missing) and unpacks `reference`, so that a run of it is one container start.
    func warm(_ reference: String) throws -> Image {
        let image = try obtain(reference)
        _ = try images.rootfs(for: image)
        return image
    }

    /// Runs the attempt, hands its result to `finished`, then removes the run directory (after
    /// the result, so removing an upper layer does not delay the report).
    func run(_ execution: Execution, hooks: Hooks, finished: (TaskResult) -> Void) {
        var runDirectory: RunDirectory?
        var container: RunningContainer?
        let scratch = execution.onScratch ? self.scratch : nil
        let journal = (scratch?.journal ?? dataDirectory + "/proplet/containers") + "/" + execution.containerID.hex
        var attached: Attached?
        let result = execute(execution, hooks: hooks, journal: journal, runs: scratch?.runs ?? dataDirectory, runDirectory: &runDirectory, container: &container,
                             attached: &attached)
        finished(result)
        // After the result, as the run directory's removal: a network's teardown (its plugins'
        // DEL, a tenth of a second or more) does not delay the report.
        if let attached {
            networks?.detach(container: execution.containerID.hex, network: attached.network)
            close(attached.fd)
        }
        container?.removeCgroup()
        runDirectory?.remove()
        unlink(journal)
    }

    /// A CNI network a run is attached to, and its namespace.
    struct Attached {
        var network: String
        var fd: Int32
    }

    private func execute(_ execution: Execution, hooks: Hooks, journal: String, runs: String, runDirectory: inout RunDirectory?,
                         container: inout RunningContainer?, attached: inout Attached?) -> TaskResult {
        let s = execution.start
        var result = TaskResult(taskId: s.taskId, attempt: s.attempt, propletId: propletID, state: .failed)
        do {
            hooks.phase(.pulling)
            let image = try execution.image ?? obtain(s.image, progress: hooks.pullProgress)
            if execution.stopRequested { return stoppedBeforeStart(result) }
            hooks.phase(.unpacking)
            let clock = ContinuousClock.now
            let lower = try images.rootfs(for: image)
            let unpacked = ContinuousClock.now
            // Recorded before anything is created, so a successor can clean up after a crash.
            try Data().write(to: URL(fileURLWithPath: journal))
            let run = try RunDirectory.create(dataDirectory: runs, id: execution.containerID, overlay: rootfsMode == .overlay && RunDirectory.overlayAvailable)
            runDirectory = run
            logger.debug("run prepared", metadata: ["task": "\(s.taskId)", "rootfs_ms": "\(milliseconds(unpacked - clock))",
                                                    "run_directory_ms": "\(milliseconds(ContinuousClock.now - unpacked))"])
            var spec = ContainerSpec(id: execution.containerID, rootfs: run.merged, command: [])
            if run.overlay {
                spec.overlay = ContainerSpec.Overlay(lower: [lower], upper: run.upper, work: run.work)
            } else {
                if rootfsMode == .overlay {
                    logger.warning("overlayfs is not available: copying the image's rootfs for this run", metadata: ["task": "\(s.taskId)"])
                } else {
                    logger.debug("copying the image's rootfs for this run (--rootfs-mode copy)", metadata: ["task": "\(s.taskId)"])
                }
                try run.copyRootfs(from: lower)
            }
            spec.command = try image.config.command(arguments: s.command ?? [])
            spec.environment = image.config.environment + s.env.keys.sorted().map { "\($0)=\(s.env[$0] ?? "")" }
            spec.workingDirectory = s.workdir ?? image.config.workingDirectory ?? "/"
            spec.user = s.user ?? image.config.user
            spec.network = s.network == "host" ? .host : .none
            if NetworkName.isCNI(s.network) {
                guard let networks else { throw PropellerError(.unsupported, "this proplet offers no network \(s.network): it has no CNI plugins") }
                // The task's own namespace, set up by the plugins before the task runs in it.
                let fd = try ContainerRuntime.makeNetworkNamespace()
                let attachment: CNINetworks.Attachment
                do {
                    attachment = try networks.attach(container: execution.containerID.hex, namespace: fd, network: s.network, ports: s.publish ?? [])
                } catch {
                    close(fd)
                    throw error
                }
                let files = run.network
                attached = Attached(network: s.network, fd: fd)
                spec.networkNamespace = fd
                spec.hostname = execution.containerID.short
                mkdir(files, 0o755)
                try CNINetworks.resolvConf().write(toFile: files + "/resolv.conf", atomically: false, encoding: .utf8)
                try CNINetworks.hosts(hostname: execution.containerID.short, address: attachment.address).write(toFile: files + "/hosts", atomically: false, encoding: .utf8)
                spec.mounts += [ContainerSpec.Mount(.bind(files + "/resolv.conf"), at: "/etc/resolv.conf"),
                                ContainerSpec.Mount(.bind(files + "/hosts"), at: "/etc/hosts")]
            }
            // Volumes first, then artifacts (one inside a writable volume goes into it), then the
            // network's files: a later mount may sit inside an earlier one, never the reverse.
            let networkFiles = spec.mounts
            spec.mounts = []
            if s.volumes != nil || s.tmpfs != nil || s.secrets != nil {
                spec.mounts += try volumes.mounts(volumes: s.volumes ?? [], tmpfs: s.tmpfs ?? [], secrets: s.secrets ?? [], values: s.secretValues ?? [],
                                                 owner: try UserResolver(rootfs: lower).resolve(spec.user))
            }
            for (i, artifact) in (s.artifacts ?? []).enumerated() {
                if i == 0 { mkdir(run.artifacts, 0o755) }
                let inVolume = spec.mounts.last { m in
                    guard case .bind = m.source, !m.readOnly else { return false }
                    return artifact.destination.hasPrefix(m.target + "/")
                }
                if let inVolume, case .bind(let hostPath) = inVolume.source {
                    try ArtifactFetcher().fetch(artifact, into: run.artifacts + "/\(i)", volume: hostPath,
                                                relative: String(artifact.destination.dropFirst(inVolume.target.count + 1)))
                } else {
                    spec.mounts.append(try ArtifactFetcher().fetch(artifact, into: run.artifacts + "/\(i)"))
                }
            }
            spec.mounts += networkFiles
            spec.killWithParent = true
            let r = s.resources
            spec.limits = CgroupLimits(memoryBytes: r.memoryBytes > 0 ? r.memoryBytes : nil, cpuMillis: r.cpuMillis > 0 ? r.cpuMillis : nil,
                                       pids: r.pids > 0 ? r.pids : nil)
            let writable = spec.overlay?.upper ?? run.merged
            try hooks.prepare?(writable)
            defer { hooks.collect?(writable) }
            var outputDirectory: String?
            if let target = s.output {
                let dir = try outputs.prepare(task: s.taskId, attempt: s.attempt, owner: try UserResolver(rootfs: lower).resolve(spec.user))
                spec.mounts.append(ContainerSpec.Mount(.bind(dir), at: try MountTarget.check(target, what: "output")))
                outputDirectory = dir
            }
            var ended = try launch(spec, execution: execution, hooks: hooks, result: result, container: &container)
            if let outputDirectory { ended.outputs = outputs.seal(outputDirectory) }
            return ended
        } catch let error as LaunchError {
            result.error = "\(error)"
            result.exitCode = error.exitStatus
        } catch let error as PropellerError {
            result.error = error.description
        } catch {
            result.error = "\(error)"
        }
        result.finishedAt = WallClock.now()
        logger.warning("task failed before it ran", metadata: ["task": "\(s.taskId)", "error": "\(result.error ?? "")"])
        return result
    }

    private func stoppedBeforeStart(_ r: TaskResult) -> TaskResult {
        var r = r
        r.state = .stopped
        r.finishedAt = WallClock.now()
        return r
    }

    private func launch(_ spec: ContainerSpec, execution: Execution, hooks: Hooks, result: TaskResult,
                        container started: inout RunningContainer?) throws -> TaskResult {
        var spec = spec
        var result = result
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        let pipes = try OutputCapture.pipes()
        spec.stdio = [devNull, pipes.write[0], pipes.write[1]]
        let capture = OutputCapture(stdoutRead: pipes.read[0], stderrRead: pipes.read[1], tailBytes: tailBytes, publish: hooks.log)
        let container: RunningContainer
        let launch = ContinuousClock.now
        do {
            container = try runtime.start(spec)
            logger.debug("container started", metadata: ["task": "\(execution.start.taskId)", "start_ms": "\(milliseconds(ContinuousClock.now - launch))"])
        } catch {
            close(pipes.write[0]); close(pipes.write[1])
            close(pipes.read[0]); close(pipes.read[1])
            throw error
        }
        started = container
        close(pipes.write[0])
        close(pipes.write[1])
        capture.start()
        hooks.phase(.running)
        if let stop = execution.attach(container) {
            container.stop(signal: stop.signal, grace: .saturating(seconds: min(stop.grace, InputLimits.graceSeconds.upperBound)))
        }
        // Saturating: the manager checks the range, but a proplet must not trap on any message.
        let timeout = execution.start.timeoutSeconds.map { Duration.saturating(seconds: $0) }
        let report = container.wait(timeout: timeout, removeCgroup: false)
        let tails = capture.finish()
        result.exitCode = report.exitCode
        result.signal = report.signal
        result.oomKilled = report.oomKilled
        result.timedOut = report.timedOut
        result.startedAt = report.startedAt
        result.finishedAt = report.finishedAt
        result.usage = TaskUsage(cpuUsec: report.usage.cpuUsageMicros, memoryPeakBytes: report.usage.memoryPeakBytes)
        result.stdoutTail = tails.stdout
        result.stderrTail = tails.stderr
        if execution.stopRequested {
            result.state = .stopped
        } else if report.exitCode == 0 && !report.timedOut {
            result.state = .completed
        } else {
            result.state = .failed
            if report.timedOut {
                result.error = "timed out after \(DurationParsing.format(timeout ?? .zero)) and was killed"
            } else if report.oomKilled && report.signal == SIGKILL {
                result.error = "killed by the OOM killer: memory limit of \(ByteSize(bytes: spec.limits.memoryBytes ?? 0)) exceeded"
            } else if let sig = report.signal {
                result.error = "killed by signal \(sig)"
            } else {
                result.error = "exited with code \(report.exitCode)"
            }
        }
        return result
    }

    /// The stored image for `reference`, pulled when missing.
    private func obtain(_ reference: String, progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> Image {
        let ref = try ImageReference(parsing: reference)
        let name = ref.description
        if let stored = try images.namedImages().first(where: { $0.name == name }), let image = try? images.image(manifest: stored.digest) {
            return image
        }
        do {
            if let proxy { return try proxy.obtain(reference, progress: progress) }
            // Unpacked as it downloads: each layer as soon as it is stored and verified.
            let observer = progress.map { report in PullProgress(reference: name) { report($0.receivedBytes, $0.totalBytes) } }
            let image = try images.pullAndUnpack(ref, client: try registryClient(), progress: observer)
            try images.tag(image, as: name)
            return image
        } catch let error as PropellerError {
            throw PropellerError(error.code, "pull \(name): \(error.message)")
        }
    }
}

func milliseconds(_ d: Duration) -> String {
    let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    return String(format: "%.2f", ms)
}
