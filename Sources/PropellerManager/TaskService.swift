import Foundation
import Logging
import PropellerCore

/// The one actor that changes the cluster: it applies events to the ``ClusterState`` in order,
/// commits each event's store writes in one transaction, and only then sends messages to
/// proplets, acknowledges results and wakes watchers.
///
/// Writes the store refuses (its disk full, say) wait in ``unsaved``, in order, and are written
/// before the next and on every tick; reads see them first, so a decision made in memory is never
/// lost to a stale row. A result is acknowledged only once the store has every write of its task:
/// until then the proplet keeps it in its outbox and sends it again. The two commands whose
/// write must succeed before anything changes (a new task, forgetting a proplet) are written
/// before their event is applied.
///
/// Active tasks live in the state and in the store; finished ones only in the store. A
/// restarted manager rebuilds everything from the store (``recover()``). Actors, their workers
/// and executions are part of the same state (``ActorTable``), changed by the same events.
public actor TaskService {
    let store: any ManagerStore
    let bus: any ControlBus
    let configuration: ManagerConfiguration
    let logger: Logger
    /// The cluster; changed only by ``apply(_:durable:at:)``.
    var state: ClusterState

    /// Task writes the store did not take, newest per task, and their transitions in order.
    var unsaved: [String: TaskRecord] = [:]
    var unsavedTransitions: [TaskTransition] = []
    /// `task logs --follow` listeners.
    var followers: [String: [UUID: LogFollower]] = [:]
    /// Called after every change to a task (the API's `--wait` listeners).
    var watchers: [String: [UUID: AsyncStream<TaskRecord>.Continuation]] = [:]
    /// Actor store writes the store did not take, in order.
    var unsavedActorWrites: [ClusterEffect] = []
    /// Synchronous senders waiting for an execution to end, and their timers.
    var executionWaiters: [String: [UUID: CheckedContinuation<ExecutionRecord?, Never>]] = [:]
    var executionWaiterTimers: [UUID: Task<Void, Never>] = [:]

    public var placements: UInt64 { state.placements }
    /// Heartbeats handled since this term began.
    public internal(set) var heartbeats: UInt64 = 0
    let started = ContinuousClock.now
    /// Set when this manager leads others that share the store: without it held, nothing is
    /// sent and commands are refused (the manager steps down and a new term starts from the
    /// store).
    public let lease: LeaderLease?

    public init(store: any ManagerStore, bus: any ControlBus, configuration: ManagerConfiguration = ManagerConfiguration(), lease: LeaderLease? = nil,
                logger: Logger = Logger(label: "propeller.manager")) {
        self.store = store
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
    /// cost as much as the state is large), the writes are committed, then the messages go out.
    /// Throws, changing nothing, when a command is refused. Returns the reply of a command.
    @discardableResult
    func apply(_ event: ClusterEvent, at now: Moment = .now) throws -> ClusterReply? {
        try requireLease()
        let effects = try state.apply(event, at: now)
        commit(effects)
        commitActorWrites(effects)
        // Under a lease, a write the store refused may mean another manager leads now: nothing
        // of this event goes out, and this term ends.
        try requireLease()
        var reply: ClusterReply?
        var followUps: [ClusterEvent] = []
        for effect in effects {
            switch effect {
            case .save: break
            case .saveProplet(let p):
                do { try store.saveProplet(p) } catch {
                    lease?.lose("a store write failed: \(error)")
                    logger.error("store write failed", metadata: ["proplet": "\(p.id)", "error": "\(error)"])
                }
            case .start(let start, let proplet): bus.send(start, to: proplet)
            case .stop(let stop, let proplet): bus.send(stop, to: proplet)
            case .acknowledge(let ref, let proplet):
                if hasUnsavedWrites(ref.taskId) { flushUnsaved() }
                if hasUnsavedWrites(ref.taskId) {
                    logger.error("result not stored yet: not acknowledged, the proplet sends it again", metadata: ["task": "\(ref.taskId)", "attempt": "\(ref.attempt)"])
                } else {
                    bus.acknowledge(ref, to: proplet)
                }
            case .confirm(let epoch): bus.confirm(epoch)
            case .notify(let t): notifyWatchers(t)
            case .reply(let r): reply = r
            case .log(let line): write(line)
            case .saveActor, .saveActorState, .saveWorker, .deleteWorker, .saveExecution, .finishExecution: break  // committed
            case .worker(let command, let proplet): bus.send(command, to: proplet)
            case .execution(let command, let proplet):
                if let followUp = send(command, to: proplet) { followUps.append(followUp) }
            case .ended(let e): wake(e)
            }
        }
        for event in followUps { deliver(event, at: now) }
        return reply
    }

    /// Throws when this manager led under a lease that it no longer holds.
    func requireLease() throws {
        if let reason = lease?.lostReason {
            throw PropellerError(.unavailable, "this manager no longer leads (\(reason)): another manager decides; try again")
        }
    }

    /// Writes an event's task changes and their transitions in one transaction (after what the
    /// store refused before); what it refuses waits in ``unsaved``.
    private func commit(_ effects: [ClusterEffect]) {
        var tasks: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        for case .save(let t, let tr) in effects {
            tasks += t
            transitions += tr
        }
        guard !tasks.isEmpty || !transitions.isEmpty else { return }
        // The newest version of each task, in the order of their last change.
        var newest: [String: Int] = [:]
        for (i, t) in tasks.enumerated() { newest[t.id] = i }
        let changed = tasks.enumerated().filter { newest[$0.element.id] == $0.offset }.map(\.element)
        do {
            guard flushUnsaved() else { throw PropellerError(.resourceExhausted, "the store has not taken earlier writes yet (is its disk full?)") }
            try store.saveTasks(changed, transitions: transitions)
        } catch {
            lease?.lose("a store write failed: \(error)")
            logger.error("store write failed: kept in memory, written again later", metadata: ["error": "\(error)"])
            for t in changed { unsaved[t.id] = t }
            unsavedTransitions += transitions
        }
    }

    /// Whether the store lacks a write of task `id` (it is still in ``unsaved``).
    func hasUnsavedWrites(_ id: String) -> Bool {
        unsaved[id] != nil || unsavedTransitions.contains { $0.taskId == id }
    }

    /// Writes what the store refused before; true when nothing is left unsaved.
    @discardableResult
    func flushUnsaved() -> Bool {
        guard !unsaved.isEmpty || !unsavedTransitions.isEmpty else { return true }
        do {
            try store.saveTasks(unsaved.values.sorted { $0.updatedAt < $1.updatedAt }, transitions: unsavedTransitions)
        } catch {
            return false
        }
        logger.notice("store writes caught up", metadata: ["tasks": "\(unsaved.count)", "transitions": "\(unsavedTransitions.count)"])
        unsaved = [:]
        unsavedTransitions = []
        return true
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
        guard t.state.isTerminal else { return }
        for c in list.values { c.finish() }
        watchers[t.id] = nil
        for c in (followers[t.id] ?? [:]).values { c.finish() }
        followers[t.id] = nil
    }
}
