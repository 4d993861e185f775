import Foundation
import Logging
import PropellerCore
import PropellerTracing
import Tracing

/// The one actor that changes the cluster: it applies events to the ``ClusterState`` in order,
/// and only once an event's store writes are committed sends its messages to proplets,
/// acknowledges its results and wakes its watchers.
///
/// Writes are written behind (``TaskService+WriteBehind.swift``): an event's writes wait in
/// ``unsaved`` and its messages in ``outbox`` while the previous batch is being committed on the
/// store's writer thread; then everything that waits goes in one transaction (group commit). So
/// the driver never waits for the disk, and one commit carries as many events as arrived during
/// the last one. Reads see the writes that wait first, so a decision made in memory is never
/// hidden by a stale row. Writes the store refuses (its disk full, say) stay in ``unsaved``, in
/// order, and are written again with the next batch and on every tick; their messages go out
/// but results are not acknowledged: until the store has them, the proplet keeps them in its
/// outbox and sends them again. A command answers once its writes are committed; a new task
/// is created only once the store has it.
///
/// Active tasks live in the state and in the store; finished ones only in the store. A
/// restarted manager rebuilds everything from the store (``recover()``). Actors, their workers
/// and executions are part of the same state (``ActorTable``), changed by the same events.
public actor TaskService {
    let store: any ManagerStore
    let bus: any ControlBus
    let configuration: ManagerConfiguration
    let logger: Logger
    /// The cluster; changed only by ``apply(_:at:)``.
    var state: ClusterState

    /// Writes not in the store yet (see ``TaskService+WriteBehind.swift``): the newest version
    /// of each task with the number of its write, transitions in order, proplets, the actor
    /// layer's writes in order, and new tasks (with their first transitions).
    var unsaved: [String: TaskRecord] = [:]
    var unsavedVersions: [String: UInt64] = [:]
    var unsavedTransitions: [TaskTransition] = []
    var unsavedProplets: [String: (record: PropletRecord, version: UInt64)] = [:]
    var unsavedActorWrites: [ActorStoreWrite] = []
    var newTasks: [(task: TaskRecord, transitions: [TaskTransition])] = []
    /// Numbers the writes above (to tell a write committed from a newer one of the same row).
    var writeVersion: UInt64 = 0
    /// Messages and notifications waiting for the writes staged before them, in order.
    var outbox: [ClusterEffect] = []
    /// The number of the batch that will take what is staged now; whether the writer runs.
    var batchNumber: UInt64 = 1
    var writing = false
    /// Callers waiting for a batch, resumed with its error (nil: committed).
    var batchWaiters: [UInt64: [CheckedContinuation<(any Error)?, Never>]] = [:]
    /// Why the last batch was refused, while its writes wait to be written again.
    var storeRefusal: String?
    /// Runs the commits.
    let writer = StoreWriter()
    /// `task logs --follow` listeners.
    var followers: [String: [UUID: LogFollower]] = [:]
    /// Live usage (``TaskService+Usage.swift``): recent samples per task and per proplet, and
    /// `task stats --follow` listeners.
    var taskUsage: [String: UsageHistory] = [:]
    var propletUsage: [String: UsageHistory] = [:]
    var usageFollowers: [String: [UUID: AsyncStream<UsageSample>.Continuation]] = [:]
    var usagePruned = ContinuousClock.now
    /// Called after every change to a task (the API's `--wait` listeners).
    var watchers: [String: [UUID: AsyncStream<TaskRecord>.Continuation]] = [:]
    /// Synchronous senders waiting for an execution to end, and their timers.
    var executionWaiters: [String: [UUID: CheckedContinuation<ExecutionRecord?, Never>]] = [:]
    var executionWaiterTimers: [UUID: Task<Void, Never>] = [:]
    /// The last pull progress of tasks whose image is being pulled (``PullReport``).
    var pullReports: [String: PullReport] = [:]
    /// Exec sessions by id (``TaskService+Sessions.swift``).
    var execSessions: [String: ExecSession] = [:]
    /// Output requests waiting for their proplet's answers, by request id.
    var outputRequests: [String: (continuation: AsyncThrowingStream<OutputReply, any Error>.Continuation, heard: ContinuousClock.Instant)] = [:]

    public var placements: UInt64 { state.placements }
    /// Heartbeats handled since this term began.
    public internal(set) var heartbeats: UInt64 = 0
    let started = ContinuousClock.now
    /// Set when this manager leads others that share the store: without it held, nothing is
    /// sent and commands are refused (the manager steps down and a new term starts from the
    /// store).
    public let lease: LeaderLease?
    /// Opens the secrets a start asks for as it leaves (nil: secrets are not configured).
    public let secrets: SecretVault?
    /// Spans of tasks' lives (``Traces``; a no-op tracer unless `--otlp-endpoint` is given).
    public let traces: Traces
    /// Proplets whose identity was revoked (``PropletIdentities``): what they still send is
    /// dropped before it reaches the state, should the broker deliver anything after the revocation.
    public nonisolated let revokedProplets = Locked(Set<String>())
    /// Proplets whose identity holds them to some namespaces: their announcements are made to say
    /// so, whatever the proplet was started with.
    public nonisolated let heldToNamespaces = Locked([String: [String]]())
    /// Each actor's namespace by id, kept as actors change: the API's access check finds an
    /// actor named by its id without waiting its turn on this actor (a message post would queue
    /// twice behind the scheduler's work otherwise).
    public nonisolated let actorNamespaces = Locked([String: String]())
    /// When each task was last queued by an API request (the start of its "schedule" span).
    var queuedAt: [String: Double] = [:]
    /// Makes tasks' own tokens (``TaskIdentity``); nil: tasks asking for one get none.
    var tokens: APITokens?
    /// Task id → the token of its current attempt.
    var identityTokens: [String: String] = [:]

    public init(store: any ManagerStore, bus: any ControlBus, configuration: ManagerConfiguration = ManagerConfiguration(), lease: LeaderLease? = nil,
                secrets: SecretVault? = nil, traces: Traces = Traces(), logger: Logger = Logger(label: "propeller.manager")) {
        self.traces = traces
        self.store = store
        self.secrets = secrets
        self.lease = lease
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
        state = ClusterState(configuration: configuration)
    }

    /// Loads proplets, active tasks, actors, workers and inboxes from the store and goes on from
    /// there.
    public func recover() throws {
        try apply(.recovered(proplets: try store.proplets(), tasks: try store.activeTasks()))
        try recoverActors()
    }

    /// Applies one event: the state changes (in place: a copy of the whole state per event would
    /// cost as much as the state is large), its writes and messages are staged for the next
    /// batch. Throws, changing nothing, when a command is refused. Returns the reply of a
    /// command (a command's caller waits for ``written()`` before answering with it).
    @discardableResult
    func apply(_ event: ClusterEvent, at now: Moment = .now) throws -> ClusterReply? {
        try requireLease()
        let effects = try state.apply(event, at: now)
        switch event {
        case .actorCreated, .actorUpdated, .actorDeleted, .actorsRecovered:
            let index = Dictionary(uniqueKeysWithValues: state.actors.records.values.map { ($0.id, $0.spec.namespace.orDefaultNamespace) })
            actorNamespaces.withLock { $0 = index }
        default: break
        }
        var reply: ClusterReply?
        var messages = false
        for effect in effects {
            switch effect {
            case .save(let tasks, let transitions):
                for t in tasks { stage(t) }
                unsavedTransitions += transitions
            case .saveProplet(let p):
                writeVersion += 1
                unsavedProplets[p.id] = (p, writeVersion)
            case .write(let w):
                unsavedActorWrites.append(w)
            case .reply(let r): reply = r
            case .log(let line): write(line)
            case .start, .stop, .acknowledge, .confirm, .notify, .worker, .execution, .ended:
                outbox.append(effect)
                messages = true
            }
        }
        if messages && !writing && !hasStagedWrites {
            // Nothing to wait for (a heartbeat that only resends a start): out at once.
            release(outbox.count, committed: true)
        } else if messages || hasStagedWrites {
            startWriting()
        }
        return reply
    }

    /// Sends, acknowledges and notifies what waited for the first `count` effects' writes
    /// (`committed`: they are in the store; otherwise results are not acknowledged). Under a
    /// lease no longer held, nothing goes out.
    func release(_ count: Int, committed: Bool) {
        let effects = outbox.prefix(count)
        outbox.removeFirst(count)
        guard lease?.lostReason == nil else { return }
        var followUps: [ClusterEvent] = []
        for effect in effects {
            switch effect {
            case .start(let start, let proplet): bus.send(withIdentity(withSecretValues(traced(start, on: proplet))), to: proplet)
            case .stop(let stop, let proplet): bus.send(stop, to: proplet)
            case .acknowledge(let ref, let proplet):
                if committed {
                    bus.acknowledge(ref, to: proplet)
                } else {
                    logger.error("result not stored yet: not acknowledged, the proplet sends it again", metadata: ["task": "\(ref.taskId)", "attempt": "\(ref.attempt)"])
                }
            case .confirm(let epoch): bus.confirm(epoch)
            case .notify(let t):
                notifyWatchers(t)
                // An attempt that ended (or went back to the queue) takes its token with it.
                if !identityTokens.isEmpty, identityTokens[t.id] != nil, t.state != .scheduled && t.state != .running && t.state != .unknown {
                    revokeIdentity(t.id)
                }
            case .worker(let command, let proplet): bus.send(withSecretValues(command), to: proplet)
            case .execution(let command, let proplet):
                if let followUp = send(command, to: proplet) { followUps.append(followUp) }
            case .ended(let e):
                revokeIdentity(e.id)
                wake(e)
            case .save, .saveProplet, .reply, .log, .write: break
            }
        }
        for event in followUps { deliver(event) }
    }

    /// `start` with the values of the secrets it asks for, opened now, for its proplet alone.
    /// One that is gone or does not open is left out: the proplet fails the attempt naming it.
    func withSecretValues(_ start: StartTask) -> StartTask {
        guard let mounts = start.secrets, !mounts.isEmpty else { return start }
        var start = start
        start.secretValues = openSecrets(mounts, in: state.active[start.taskId]?.spec.namespace.orDefaultNamespace ?? Namespaces.defaultName,
                                         for: ["task": "\(start.taskId)"])
        return start
    }

    /// A worker's prepare with the values of its secrets, as a task's start.
    func withSecretValues(_ command: WorkerCommand) -> WorkerCommand {
        guard command.action == .prepare, let mounts = command.secrets, !mounts.isEmpty else { return command }
        var command = command
        command.secretValues = openSecrets(mounts, in: (try? state.actor(command.actorId))?.spec.namespace.orDefaultNamespace ?? Namespaces.defaultName,
                                           for: ["actor": "\(command.actorId)"])
        return command
    }

    /// The values that open; each one that does not is logged with `whose`.
    private func openSecrets(_ mounts: [SecretMount], in namespace: String, for whose: Logger.Metadata) -> [SecretValue] {
        let (values, problems) = secrets?.values(mounts, in: namespace) ?? ([], ["secrets are not configured on this manager"])
        for problem in problems {
            logger.error("a secret cannot be given", metadata: whose.merging(["problem": "\(problem)"]) { a, _ in a })
        }
        return values
    }

    /// Throws when this manager led under a lease that it no longer holds.
    func requireLease() throws {
        if let reason = lease?.lostReason {
            throw PropellerError(.unavailable, "this manager no longer leads (\(reason)): another manager decides; try again")
        }
    }

    /// Whether the store lacks a write of task `id`.
    func hasUnsavedWrites(_ id: String) -> Bool {
        unsaved[id] != nil || unsavedTransitions.contains { $0.taskId == id } || newTasks.contains { $0.task.id == id }
    }

    private func write(_ line: ClusterLog) {
        let level: Logger.Level = switch line.level {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
        logger.log(level: level, "\(line.message)", metadata: line.metadata.mapValues { .string($0) })
    }

    /// A task as stored, or as it will be once the store takes the unsaved changes.
    func stored(_ id: String) throws -> TaskRecord? {
        if let t = unsaved[id] { return t }
        return try store.task(id: id)
    }

    func notifyWatchers(_ t: TaskRecord) {
        let list = watchers[t.id] ?? [:]
        for c in list.values { c.yield(t) }
        if t.phase != TaskEvent.Phase.pulling.rawValue { pullReports[t.id] = nil }
        guard t.state.isTerminal else { return }
        for c in list.values { c.finish() }
        watchers[t.id] = nil
        for c in (followers[t.id] ?? [:]).values { c.finish() }
        followers[t.id] = nil
        for c in (usageFollowers[t.id] ?? [:]).values { c.finish() }
        usageFollowers[t.id] = nil
    }
}
