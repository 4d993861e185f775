import Foundation
import Logging
import PropellerCore

/// The one actor that changes the cluster: it applies events to the ``ClusterState`` in order,
/// commits each event's store writes in one transaction, and only then sends messages to
/// proplets, acknowledges results and wakes watchers.
///
/// Commands and results are applied only if the store takes their writes: a result is then
/// acknowledged, else the proplet keeps it in its outbox and sends it again; a command answers
/// with the store's error. Other events (placements, heartbeats, liveness) go on when the store
/// refuses them (its disk full, say): their writes wait in ``unsaved`` and are written before
/// the next and on every tick, so a decision made in memory is never lost to a stale row.
///
/// Active tasks live in the state and in the store; finished ones only in the store. A
/// restarted manager rebuilds everything from the store (``recover()``).
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

    public var placements: UInt64 { state.placements }
    let started = ContinuousClock.now

    public init(store: any ManagerStore, bus: any ControlBus, configuration: ManagerConfiguration = ManagerConfiguration(), logger: Logger = Logger(label: "propeller.manager")) {
        self.store = store
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
        state = ClusterState(configuration: configuration)
    }

    /// Loads proplets and active tasks from the store and goes on from there.
    public func recover() throws {
        try apply(.recovered(proplets: try store.proplets(), tasks: try store.activeTasks()))
    }

    /// Applies one event: the state changes, the writes are committed, then the messages go out.
    /// With `durable`, nothing changes unless the store took the writes (the store's error is
    /// thrown). Returns the reply of a command.
    @discardableResult
    func apply(_ event: ClusterEvent, durable: Bool = false, at now: Moment = .now) throws -> ClusterReply? {
        var next = state
        let effects = try next.apply(event, at: now)
        try commit(effects, durable: durable)
        state = next
        var reply: ClusterReply?
        for effect in effects {
            switch effect {
            case .insert, .save, .deleteProplet: break
            case .saveProplet(let p):
                do { try store.saveProplet(p) } catch { logger.error("store write failed", metadata: ["proplet": "\(p.id)", "error": "\(error)"]) }
            case .start(let start, let proplet): bus.send(start, to: proplet)
            case .stop(let stop, let proplet): bus.send(stop, to: proplet)
            case .acknowledge(let ref, let proplet): bus.acknowledge(ref, to: proplet)
            case .confirm(let epoch): bus.confirm(epoch)
            case .notify(let t): notifyWatchers(t)
            case .reply(let r): reply = r
            case .log(let line): write(line)
            }
        }
        return reply
    }

    /// Writes an event's inserts, deletions and task changes (one transaction for the changes).
    private func commit(_ effects: [ClusterEffect], durable: Bool) throws {
        var tasks: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        for effect in effects {
            switch effect {
            case .insert(let t, let tr): try store.insertTasks(t, transitions: tr)
            case .deleteProplet(let id): try store.deleteProplet(id: id)
            case .save(let t, let tr):
                tasks += t
                transitions += tr
            default: continue
            }
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
            if durable {
                logger.error("store write failed: nothing applied", metadata: ["error": "\(error)"])
                throw error
            }
            logger.error("store write failed: kept in memory, written again later", metadata: ["error": "\(error)"])
            for t in changed { unsaved[t.id] = t }
            unsavedTransitions += transitions
        }
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
