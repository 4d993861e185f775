#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PropellerCore
import PropellerImage
import PropellerMQTT
import PropellerRuntime

/// `propeller proplet`: announces itself, heartbeats with capacity and what it runs, runs the
/// tasks the manager places here, and reports phases, logs and results. Results stay in an
/// outbox on disk until the manager acknowledges them, so neither a broker restart nor a
/// manager restart loses one.
public actor PropletAgent {
    let options: PropletOptions
    let client: MQTTClient
    let runner: TaskRunner
    let runtime: ContainerRuntime
    let outbox: ResultOutbox
    /// The attempts this proplet accepted and how they ended (``AttemptJournal``).
    let journal: AttemptJournal
    let proxy: ProxyImageSource?
    let scratch: ScratchSpace?
    let logger: Logger
    let topics: Topics

    var executions: [String: Execution] = [:]
    /// Processes started in running tasks (`propeller task exec`).
    let sessions: ExecSessions
    /// This proplet's own metrics (``PropletMetrics``; served on `--http`).
    public let metrics: PropletMetrics
    /// The sum of its tasks' last usage sample (for the metrics).
    var lastTotal = UsageSample(at: 0)
    /// Actor workers by id.
    var workers: [String: WorkerSlot] = [:]
    /// When expired task outputs were last removed.
    var outputsSwept = ContinuousClock.now - .seconds(3600)
    /// The named volumes as last measured (``namedVolumes()``).
    var volumeListing: (at: ContinuousClock.Instant, volumes: [NamedVolumeInfo])?
    /// Attempts seen recently (bounded), so a redelivered start is not run twice.
    var seen: Set<TaskAttempt> = []
    var seenOrder: [TaskAttempt] = []
    var accepting = true
    /// The placement epoch the manager last confirmed (``PropletEpoch``); nil until it has since
    /// this proplet started, reconnected or found itself paused. Starts wait in ``held`` while
    /// it is nil: one queued for it before the manager gave it up must not run. (The epoch is
    /// durable in the manager's store; this proplet needs no copy of its own, since it runs
    /// nothing after a start, a reconnect or a pause before the manager has confirmed it.)
    var epoch: UInt64?
    var held: [StartTask] = []
    /// Worker prepares and execution runs held with the starts, in order.
    var heldActorCommands: [HeldActorCommand] = []
    /// The broker connection the epoch was confirmed on (``MQTTClient/connectionCount``), and
    /// when the last heartbeat went out (a gap of more than two intervals: this process was
    /// paused, the manager may have given it up meanwhile).
    var confirmedOnConnection = 0
    var lastBeat = ContinuousClock.now
    /// Set once the goodbye is out: no heartbeat may follow it (it would revive the proplet).
    var saidGoodbye = false
    /// Each running attempt's CPU time at the last usage sample, for its rate.
    var lastCPU: [TaskAttempt: (micros: UInt64, at: ContinuousClock.Instant)] = [:]
    var seq: UInt64 = 0

    public init(options: PropletOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        topics = options.topics
        var mqtt = options.mqtt
        mqtt.persistentSession = true
        mqtt.will = (options.topics.report(.alive, from: options.id), (try? WireCoding.encode(PropletHeartbeat(propletId: options.id, status: .offline))) ?? [], 1, false)
        client = try MQTTClient(mqtt)
        let cacheDir = options.dataDirectory + "/seccomp"
        runtime = try ContainerRuntime(networkNamespacePool: 2, seccompCache: SeccompCache(directory: cacheDir), logger: logger)
        let images = try ImageStore(dataDirectory: options.dataDirectory)
        // A crash or power cut in the middle of an unpack leaves it incomplete: unpacked again.
        for name in images.removeIncompleteUnpacks() {
            logger.notice("removed an unpack that did not complete", metadata: ["directory": "\(name)"])
        }
        scratch = ScratchSpace.prepare(at: options.dataDirectory + "/scratch", sizeBytes: options.scratchBytes, logger: logger)
        proxy = options.imageSource == .proxy
            ? ProxyImageSource(client: client, topics: options.topics, propletID: options.id, images: images, logger: logger) : nil
        runner = TaskRunner(propletID: options.id, images: images, dataDirectory: options.dataDirectory, scratch: scratch, runtime: runtime,
                            registryClient: options.registryClient, proxy: proxy, tailBytes: options.tailBytes, rootfsMode: options.rootfsMode,
                            volumes: PropletVolumes(host: options.hostVolumes, namedRoot: options.dataDirectory + "/volumes"),
                            outputs: TaskOutputs(root: options.dataDirectory + "/outputs", limitBytes: options.outputLimitBytes, ttl: options.outputTTL),
                            networks: try Self.networks(options, logger: logger), logger: logger)
        outbox = try ResultOutbox(directory: options.dataDirectory + "/proplet/outbox")
        journal = try AttemptJournal(path: options.dataDirectory + "/proplet/attempts.jsonl")
        let (client, sessionTopic, sessionLogger) = (client, options.topics.report(.sessions, from: options.id), logger)
        let metrics = PropletMetrics()
        self.metrics = metrics
        sessions = ExecSessions(propletID: options.id, logger: logger) { frame in
            if frame.kind == .started { metrics.sessionOpened() }
            do {
                try client.publish(sessionTopic, try WireCoding.encode(frame))
            } catch {
                sessionLogger.warning("an exec session's frame was not sent", metadata: ["session": "\(frame.sessionId)", "error": "\(error)"])
            }
        }
    }

    var announcement: PropletAnnouncement {
        var uts = utsname()
        uname(&uts)
        let arch = withUnsafeBytes(of: uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return PropletAnnouncement(propletId: options.id, name: options.name, version: "0.1.0", labels: options.labels, capacity: options.capacity,
                                   os: "linux", arch: arch == "x86_64" ? "amd64" : (arch == "aarch64" ? "arm64" : arch),
                                   cgroupMode: runtime.cgroups.layout.mode == .unified ? "v2" : "v1",
                                   hostVolumes: options.hostVolumes.isEmpty ? nil : runner.volumes.announced,
                                   networks: runner.networks.map(\.offered), namespaces: options.namespaces.isEmpty ? nil : options.namespaces)
    }

    /// The CNI networks, or nil where none is offered (no plugins, no lists).
    static func networks(_ options: PropletOptions, logger: Logger) throws -> CNINetworks? {
        let networks = try CNINetworks(options.cni ?? CNINetworks.Configuration(stateDirectory: options.dataDirectory + "/cni"), logger: logger)
        if networks.offered.isEmpty { logger.notice("no CNI networks: tasks get none or host (install containernetworking-plugins for bridge)") }
        return networks.offered.isEmpty ? nil : networks
    }

    /// Cleans up after a crashed predecessor: kills and removes the cgroups of containers it
    /// recorded as started, and removes their run directories.
    func cleanUpPredecessor() {
        let dir = options.dataDirectory + "/proplet/containers"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for journal in [dir, scratch?.journal].compactMap({ $0 }) {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: journal)) ?? [] {
                guard let id = try? ContainerID(validating: name) else { continue }
                let removed = runtime.cgroups.removeLeftover(name: id.hex)
                for data in [options.dataDirectory, scratch?.runs].compactMap({ $0 }) {
                    RunDirectory(dataDirectory: data, id: id, overlay: true).remove()
                }
                unlink(journal + "/" + name)
                logger.notice("cleaned up a container left by a previous run", metadata: ["container": "\(id.short)", "cgroup_removed": "\(removed)"])
            }
        }
    }

    /// Attempts a previous run of this proplet accepted and never finished died with it: each is
    /// reported failed (once, through the outbox), so the manager applies its restart policy at
    /// once instead of finding it gone from the heartbeats.
    func reportAttemptsThatDiedWithThePredecessor() {
        for ref in journal.unfinished() where !outbox.contains(ref) {
            let result = TaskResult(taskId: ref.taskId, attempt: ref.attempt, propletId: options.id, state: .failed,
                                    error: "proplet \(options.id) stopped while the task ran (its container died with it)", finishedAt: WallClock.now())
            journal.end(result)
            finish(result)
            logger.notice("reported an attempt that died with the previous run", metadata: ["task": "\(ref.taskId)", "attempt": "\(ref.attempt)"])
        }
    }

    /// Runs until `shutdown` completes (SIGTERM) or the task is cancelled.
    public func run() async throws {
        cleanUpPredecessor()
        // Their containers are gone: what they left on networks (veths, rules, leases) goes too.
        runner.networks?.cleanUpLeftovers()
        reportAttemptsThatDiedWithThePredecessor()
        try client.subscribe(topics.propletInbox(options.id))
        if proxy != nil { try client.subscribe(topics.registryResponses(options.id)) }
        // A proplet that starts before its broker waits for it (its client connects, and
        // reconnects, on its own thread); heartbeats carry the announcement once it is there.
        try client.start()
        client.reportFirstConnection(logger: logger)
        publish(topics.report(.create, from: options.id), announcement)
        heartbeat()
        let messages = client.messages
        let interval = options.heartbeatInterval
        try await withThrowingTaskGroup(of: Void.self) { group in
            let proxy = self.proxy
            let topics = self.topics
            let responses = topics.registryResponses(options.id)
            group.addTask { [self] in
                for await message in messages {
                    // Image chunks and answers go straight to the waiting task thread.
                    if let proxy, topics.digest(inBlobTopic: message.topic) != nil {
                        proxy.handleChunk(message.payload)
                    } else if let proxy, message.topic == responses {
                        proxy.handleResponse(message.payload)
                    } else {
                        await handle(message)
                    }
                }
            }
            group.addTask { [self] in
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    await tick()
                }
            }
            if options.statsInterval > .zero {
                let statsInterval = options.statsInterval
                group.addTask { [self] in
                    while !Task.isCancelled {
                        try await Task.sleep(for: statsInterval)
                        await sampleUsage()
                    }
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    func tick() {
        if ContinuousClock.now - outputsSwept > .seconds(600) {
            outputsSwept = .now
            runner.outputs.removeExpired()
        }
        checkEpoch()
        heartbeat()
        // Results not yet acknowledged go out again (the manager treats duplicates as such).
        for result in outbox.pending() { publish(topics.report(.results, from: options.id), result) }
    }

    func heartbeat() {
        guard !saidGoodbye else { return }
        seq += 1
        lastBeat = .now
        let running = executions.values.map(\.start.ref).sorted { $0.taskId < $1.taskId }
        let allocated = executions.values.reduce(Resources.zero) { $0 + $1.start.resources }
        publish(topics.report(.alive, from: options.id), PropletHeartbeat(propletId: options.id, status: accepting ? .online : .draining, seq: seq, announcement: announcement,
                                                      allocated: allocated, running: running, finished: outbox.pending().map(\.ref),
                                                      workers: workerBeats, awaitingEpoch: epoch == nil ? true : nil,
                                                      // Held starts are listed apart: the manager must not take them for lost, nor
                                                      // for running (a withdrawn one must not take its given-up task back).
                                                      held: held.isEmpty ? nil : held.map(\.ref), volumes: namedVolumes()))
    }

    /// The figures of `GET /metrics` as of now.
    public func metricsPage() -> String {
        var snapshot = PropletMetrics.Snapshot()
        snapshot.running = executions.count
        snapshot.workers = workers.count
        snapshot.sessions = sessions.count
        snapshot.outbox = outbox.pending().count
        snapshot.connected = client.isConnected
        snapshot.cpuCores = executions.isEmpty ? 0 : lastTotal.cpuCores ?? 0
        snapshot.memoryBytes = executions.isEmpty ? 0 : lastTotal.memoryBytes ?? 0
        snapshot.capacity = options.capacity
        return metrics.render(snapshot)
    }

    /// Live usage: every running task's cgroup read now, with its CPU rate since the last
    /// sample, and their sum, sent best effort (QoS 0: a lost sample is a gap in a graph).
    func sampleUsage() {
        guard !saidGoodbye else { return }
        let now = ContinuousClock.now
        let wall = WallClock.now()
        var tasks: [TaskUsageSample] = []
        var total = UsageSample(at: wall)
        var sampled: [TaskAttempt: (micros: UInt64, at: ContinuousClock.Instant)] = [:]
        for e in executions.values.sorted(by: { $0.start.taskId < $1.start.taskId }) {
            guard let u = e.usage() else { continue }
            var sample = UsageSample(at: wall, cpuUsageMicros: u.cpuUsageMicros, memoryBytes: u.memoryBytes, pids: u.pids,
                                     ioReadBytes: u.ioReadBytes, ioWriteBytes: u.ioWriteBytes)
            if let micros = u.cpuUsageMicros {
                if let last = lastCPU[e.start.ref], micros >= last.micros {
                    let (seconds, attoseconds) = (now - last.at).components
                    let elapsed = Double(seconds) + Double(attoseconds) / 1e18
                    if elapsed > 0 { sample.cpuCores = Double(micros - last.micros) / 1e6 / elapsed }
                }
                sampled[e.start.ref] = (micros, now)
            }
            tasks.append(TaskUsageSample(taskId: e.start.taskId, attempt: e.start.attempt, sample: sample))
            total.add(sample)
        }
        lastCPU = sampled
        lastTotal = total
        do {
            try client.publish(topics.report(.stats, from: options.id), try WireCoding.encode(UsageReport(propletId: options.id, tasks: tasks, total: total)), qos: 0)
        } catch {
            logger.debug("usage sample not sent", metadata: ["error": "\(error)"])
        }
    }

    /// The named volumes for the heartbeat: their sizes measured again every 30 s at most, and
    /// after a task with volumes ended (it may have made or filled one); what uses them counted
    /// now.
    func namedVolumes() -> [NamedVolumeInfo]? {
        let using = volumesInUse
        if volumeListing == nil || ContinuousClock.now - (volumeListing?.at ?? .now) >= .seconds(30) {
            volumeListing = (.now, runner.volumes.named(using: []))
        }
        let volumes = (volumeListing?.volumes ?? []).map { v in
            NamedVolumeInfo(name: v.name, sizeBytes: v.sizeBytes, inUse: using.filter { $0 == v.name }.count)
        }
        return volumes.isEmpty ? nil : volumes
    }

    /// The volume names of the tasks and warm workers here now.
    var volumesInUse: [String] {
        executions.values.flatMap { ($0.start.volumes ?? []).map(\.name) } + workers.values.flatMap { ($0.command.volumes ?? []).map(\.name) }
    }

    /// `control/proplet/{id}/output`: lists or sends a task's kept outputs, on a thread of its
    /// own (a file may be large), in order on `control/manager/{id}/outputs`.
    func handleOutput(_ request: OutputRequest) {
        let (outputs, client, topics, propletID, logger) = (runner.outputs, client, topics, options.id, logger)
        Thread {
            outputs.answer(request, propletID: propletID) { reply in
                do {
                    try client.publish(topics.report(.outputs, from: propletID), try WireCoding.encode(reply))
                } catch {
                    logger.warning("an output answer was not sent", metadata: ["task": "\(request.taskId)", "error": "\(error)"])
                }
            }
        }.start()
    }

    /// `control/proplet/{id}/volume`: removes a named volume nothing here uses now.
    func handleVolume(_ command: VolumeCommand) {
        guard command.action == .remove else { return }
        let users = volumesInUse.filter { $0 == command.name }.count
        guard users == 0 else {
            logger.warning("named volume not removed: in use", metadata: ["volume": "\(command.name)", "users": "\(users)"])
            return
        }
        do {
            try runner.volumes.remove(command.name)
            logger.notice("named volume removed", metadata: ["volume": "\(command.name)"])
        } catch {
            logger.warning("named volume not removed", metadata: ["volume": "\(command.name)", "error": "\(error)"])
        }
        volumeListing = nil
        heartbeat()
    }

    /// Forgets the confirmed epoch when the broker connection is a new one or this process was
    /// paused (its heartbeat loop silent for more than two intervals), and asks again at once.
    func checkEpoch() {
        guard epoch != nil else { return }
        let why: String
        if client.connectionCount != confirmedOnConnection {
            why = "reconnected to the broker"
        } else if ContinuousClock.now - lastBeat > options.heartbeatInterval * 2 {
            why = "silent for \(DurationParsing.format(ContinuousClock.now - lastBeat)) (paused?)"
        } else {
            return
        }
        logger.notice("holding starts until the manager confirms the placement epoch", metadata: ["why": "\(why)", "epoch": "\(epoch ?? 0)"])
        epoch = nil
        heartbeat()
    }

    /// The manager's placement epoch: starts of an older one were withdrawn (dropped), the
    /// others run.
    func confirm(_ e: PropletEpoch) {
        guard e.propletId == options.id else { return }
        if epoch == nil {
            logger.notice("placement epoch confirmed", metadata: ["epoch": "\(e.epoch)", "held_starts": "\(held.count)", "held_actor_commands": "\(heldActorCommands.count)"])
        }
        epoch = e.epoch
        confirmedOnConnection = client.connectionCount
        let waiting = held
        held = []
        for s in waiting { startTask(s) }
        let actorCommands = heldActorCommands
        heldActorCommands = []
        for c in actorCommands {
            switch c {
            case .prepare(let w): prepareWorker(w)
            case .run(let r): runExecution(r)
            }
        }
    }

    /// Whether a command placed in epoch `placed` may run now. Without an epoch (an older
    /// manager) it may; while none is confirmed it is held; one placed before the confirmed
    /// epoch was withdrawn by the manager, which gave this proplet up meanwhile.
    func admission(_ placed: UInt64?) -> Admission {
        guard let placed else { return .now }
        checkEpoch()
        guard let epoch else { return .held }
        if placed < epoch { return .withdrawn(current: epoch) }
        self.epoch = placed
        return .now
    }

    enum Admission {
        case now
        case held
        case withdrawn(current: UInt64)
    }

    func handle(_ message: MQTTMessage) {
        do {
            switch message.topic {
            case topics.start(options.id): startTask(try WireCoding.decode(StartTask.self, from: message.payload))
            case topics.stop(options.id): stopTask(try WireCoding.decode(StopTask.self, from: message.payload))
            case topics.ack(options.id):
                if let ack = try? WireCoding.decode(ResultAck.self, from: message.payload) {
                    outbox.remove(ack)
                } else {
                    confirm(try WireCoding.decode(PropletEpoch.self, from: message.payload))
                }
            case topics.worker(options.id): handleWorker(try WireCoding.decode(WorkerCommand.self, from: message.payload))
            case topics.volume(options.id): handleVolume(try WireCoding.decode(VolumeCommand.self, from: message.payload))
            case topics.output(options.id): handleOutput(try WireCoding.decode(OutputRequest.self, from: message.payload))
            case topics.execution(options.id): handleExecution(try WireCoding.decode(ExecutionCommand.self, from: message.payload))
            case topics.session(options.id):
                let command = try WireCoding.decode(SessionCommand.self, from: message.payload)
                sessions.handle(command, execution: executions[command.taskId])
            default: break
            }
        } catch {
            logger.warning("dropped a malformed message", metadata: ["topic": "\(message.topic)", "error": "\(error)"])
        }
    }

    func startTask(_ s: StartTask) {
        let ref = s.ref
        if seen.contains(ref) || executions[s.taskId]?.start.attempt == s.attempt || outbox.contains(ref) || journal.contains(ref) { return }
        switch admission(s.epoch) {
        case .now: break
        case .held:
            if !held.contains(where: { $0.ref == ref }) { held.append(s) }
            return
        case .withdrawn(let current):
            remember(ref)
            logger.notice("dropped a start the manager withdrew", metadata: ["task": "\(s.taskId)", "attempt": "\(s.attempt)", "its_epoch": "\(s.epoch ?? 0)", "epoch": "\(current)"])
            return
        }
        remember(ref)
        guard accepting else {
            finish(TaskResult(taskId: s.taskId, attempt: s.attempt, propletId: options.id, state: .failed, error: "proplet \(options.id) is shutting down", finishedAt: WallClock.now()))
            return
        }
        let execution = Execution(start: s)
        do {
            try journal.accept(ref, container: execution.containerID)
        } catch {
            finish(TaskResult(taskId: s.taskId, attempt: s.attempt, propletId: options.id, state: .failed, error: "proplet \(options.id) cannot record the attempt: \(error)",
                              finishedAt: WallClock.now()))
            return
        }
        if let older = executions[s.taskId] {
            // A newer attempt replaces one the manager gave up on.
            older.requestStop(signal: SIGKILL, grace: 0)
        }
        executions[s.taskId] = execution
        logger.info("task accepted", metadata: ["task": "\(s.taskId)", "attempt": "\(s.attempt)", "image": "\(s.image)"])
        event(s, .accepted)
        metrics.attemptAccepted()
        let acceptedAt = ContinuousClock.now
        let metrics = self.metrics
        let traces = options.traces
        let runner = self.runner
        let client = self.client
        let topics = self.topics
        let propletID = options.id
        let outbox = self.outbox
        let journal = self.journal
        let logger = self.logger
        Thread.detachNewThread { [self] in
            let hooks = TaskRunner.Hooks(
                phase: { phase in
                    execution.notePhase(phase)
                    metrics.phase(phase, sinceAccepted: ContinuousClock.now - acceptedAt)
                    let e = TaskEvent(taskId: s.taskId, attempt: s.attempt, propletId: propletID, phase: phase, at: WallClock.now())
                    try? client.publish(topics.report(.events, from: propletID), WireCoding.encode(e))
                },
                log: { stream, offset, bytes in
                    let block = LogBlock(taskId: s.taskId, attempt: s.attempt, stream: stream, offset: offset, data: String(decoding: bytes, as: UTF8.self))
                    try? client.publish(topics.logs(from: propletID, task: s.taskId), WireCoding.encode(block), qos: 0)
                },
                pullProgress: { received, total in
                    // About once a second, best effort (QoS 0): `task create --wait` draws it.
                    guard execution.pullReportDue() else { return }
                    var e = TaskEvent(taskId: s.taskId, attempt: s.attempt, propletId: propletID, phase: .pulling, at: WallClock.now())
                    e.pull = PullReport(receivedBytes: received, totalBytes: total)
                    try? client.publish(topics.report(.events, from: propletID), WireCoding.encode(e), qos: 0)
                })
            runner.run(execution, hooks: hooks) { result in
                let result = Self.traced(result, of: execution, traces: traces, propletID: propletID)
                metrics.attemptEnded(result.state)
                journal.end(result)
                Self.report(result, outbox: outbox, client: client, topics: topics, logger: logger)
                Task { await self.finished(execution, result) }
            }
        }
    }

    func remember(_ ref: TaskAttempt) {
        seen.insert(ref)
        seenOrder.append(ref)
        if seenOrder.count > 10_000 {
            for old in seenOrder.prefix(5_000) { seen.remove(old) }
            seenOrder.removeFirst(5_000)
        }
    }

    func event(_ s: StartTask, _ phase: TaskEvent.Phase) {
        publish(topics.report(.events, from: options.id), TaskEvent(taskId: s.taskId, attempt: s.attempt, propletId: options.id, phase: phase, at: WallClock.now()))
    }

    /// After the result went out (from the task's own thread): forget the execution.
    func finished(_ execution: Execution, _ result: TaskResult) {
        if executions[execution.start.taskId] === execution { executions[execution.start.taskId] = nil }
        if execution.start.volumes != nil { volumeListing = nil }  // it may have made or filled a named volume
        logger.info("task ended", metadata: ["task": "\(result.taskId)", "attempt": "\(result.attempt)", "state": "\(result.state.rawValue)",
                                             "exit_code": "\(result.exitCode.map(String.init) ?? "-")"])
        heartbeat()
    }

    /// Keeps the result in the outbox, then publishes it. Called off the actor (file I/O must
    /// not hold up the handling of the next start).
    nonisolated static func report(_ result: TaskResult, outbox: ResultOutbox, client: MQTTClient, topics: Topics, logger: Logger) {
        do {
            try outbox.add(result)
        } catch {
            logger.error("cannot keep the result on disk; sending it anyway", metadata: ["task": "\(result.taskId)", "error": "\(error)"])
        }
        do {
            try client.publish(topics.report(.results, from: result.propletId), try WireCoding.encode(result))
        } catch {
            logger.debug("publish failed (the outbox sends it again)", metadata: ["task": "\(result.taskId)", "error": "\(error)"])
        }
    }

    func finish(_ result: TaskResult) {
        Self.report(result, outbox: outbox, client: client, topics: topics, logger: logger)
    }

    func stopTask(_ s: StopTask) {
        if let i = held.firstIndex(where: { $0.ref == TaskAttempt(taskId: s.taskId, attempt: s.attempt) }) {
            // Stopped while it waited for the epoch: it never runs, and says so.
            let start = held.remove(at: i)
            remember(start.ref)
            logger.info("stopped a held start", metadata: ["task": "\(s.taskId)", "attempt": "\(s.attempt)"])
            finish(TaskResult(taskId: s.taskId, attempt: s.attempt, propletId: options.id, state: .stopped, error: "stopped before it started", finishedAt: WallClock.now()))
            return
        }
        guard let execution = executions[s.taskId], execution.start.attempt == s.attempt else { return }
        logger.info("stopping task", metadata: ["task": "\(s.taskId)", "signal": "\(s.signal)"])
        execution.requestStop(signal: s.signal, grace: s.graceSeconds)
    }

    /// SIGTERM: stop accepting, let running tasks finish for up to the drain timeout, stop the
    /// rest, report every result, say goodbye.
    public func shutdown() async {
        accepting = false
        // Held starts never ran: the manager re-queues their tasks when it hears the goodbye
        // (and replaces the workers and runs the messages elsewhere).
        held = []
        heldActorCommands = []
        heartbeat()
        logger.notice("draining", metadata: ["running": "\(executions.count)", "timeout": "\(DurationParsing.format(options.drainTimeout))"])
        let deadline = ContinuousClock.now + options.drainTimeout
        while (!executions.isEmpty || workers.values.contains { $0.running != nil }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for e in executions.values { e.requestStop(signal: SIGTERM, grace: 5) }
        for w in workers.values { w.running?.requestStop(signal: SIGTERM, grace: 5) }
        let hardDeadline = ContinuousClock.now + .seconds(10)
        while (!executions.isEmpty || workers.values.contains { $0.running != nil }) && ContinuousClock.now < hardDeadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        // Give the manager a moment to acknowledge the last results; the rest stay in the
        // outbox and go out when the proplet starts again.
        let ackDeadline = ContinuousClock.now + .seconds(3)
        while !outbox.pending().isEmpty && ContinuousClock.now < ackDeadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        saidGoodbye = true
        publish(topics.report(.alive, from: options.id), PropletHeartbeat(propletId: options.id, status: .offline, seq: seq + 1))
        try? await Task.sleep(for: .milliseconds(200))
        client.disconnect()
        runtime.shutdown()
        scratch?.unmount()
        runner.volumes.unmountSized()
        logger.notice("proplet stopped")
    }

    func publish<T: Encodable>(_ topic: String, _ message: T) {
        do {
            try client.publish(topic, try WireCoding.encode(message))
        } catch {
            logger.debug("publish failed (will be retried or reconciled)", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }
}
