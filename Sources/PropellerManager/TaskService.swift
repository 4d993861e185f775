import Foundation
import Logging
import PropellerCore

/// The manager's brain: owns the active tasks, the reservation ledger and the pending queue,
/// writes every change through to the store, and tells proplets what to do through the bus.
///
/// Active tasks (pending, scheduled, running) live in memory and in the store; finished ones
/// only in the store. A restarted manager rebuilds everything from the store (``recover()``).
public actor TaskService {
    let store: any ManagerStore
    let bus: any ControlBus
    let configuration: ManagerConfiguration
    let logger: Logger
    var scheduler: Scheduler

    /// Pending, scheduled and running tasks.
    var active: [String: TaskRecord] = [:]
    /// Pending task ids, oldest first.
    var pendingQueue: [String] = []
    /// The reservations of task attempts and actor workers, and the scheduler's view of the
    /// proplets (``AllocationTable``).
    var ledger = AllocationTable()
    var proplets: [String: PropletRecord] = [:]
    /// Per proplet: its connection (``PropletConnection``).
    var connections: [String: PropletConnection] = [:]
    /// Task changes the store did not take (its disk full, say), newest per task, and their
    /// transitions in order: written before the next change and on every liveness tick, and read
    /// before the store, so a decision made in memory is never lost to a stale row.
    var unsaved: [String: TaskRecord] = [:]
    var unsavedTransitions: [TaskTransition] = []
    /// The manager's own broker link as the liveness loop last saw it.
    var brokerLinkDown = false
    var brokerConnections = 0
    /// Per task: heartbeats in a row that did not mention it, and when its start was sent.
    var unreported: [String: Int] = [:]
    var dispatchedAt: [String: ContinuousClock.Instant] = [:]
    /// `task logs --follow` listeners.
    var followers: [String: [UUID: LogFollower]] = [:]
    /// Called after every change to a task (the API's `--wait` listeners).
    var watchers: [String: [UUID: AsyncStream<TaskRecord>.Continuation]] = [:]

    public private(set) var placements: UInt64 = 0
    let started = ContinuousClock.now

    public init(store: any ManagerStore, bus: any ControlBus, configuration: ManagerConfiguration = ManagerConfiguration(), logger: Logger = Logger(label: "propeller.manager")) {
        self.store = store
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
        scheduler = Scheduler(policy: configuration.policy)
    }

    /// Loads proplets and active tasks from the store, rebuilding the ledger. Proplets the store
    /// has as alive or disconnected count as alive from now: each gets a full liveness period to
    /// heartbeat (and then the grace) before its work is given up.
    public func recover(schedule: Bool = true) throws {
        let now = ContinuousClock.now
        for p in try store.proplets() {
            addNode(p)
            connections[p.id] = p.state == "lost" || (p.state == nil && !p.alive) ? .lost(reason: p.reason ?? "lost") : .alive(lastSeen: now)
        }
        for t in try store.activeTasks() {
            active[t.id] = t
            switch t.state {
            case .pending: pendingQueue.append(t.id)
            case .scheduled, .running, .unknown:
                if let p = t.assignedProplet, ledger.contains(p) {
                    reserve(t, on: p)
                    dispatchedAt[t.id] = now
                } else {
                    requeueOrFail(t, reason: "proplet \(t.assignedProplet ?? "?") is unknown after a restart", at: WallClock.now())
                }
            default: break
            }
        }
        logger.info("recovered state", metadata: ["proplets": "\(ledger.nodes.count)", "active_tasks": "\(active.count)", "pending": "\(pendingQueue.count)"])
        if schedule { schedulePending() }
    }

    // MARK: Ledger

    func addNode(_ p: PropletRecord) {
        proplets[p.id] = p
        ledger.upsert(p.id, labels: p.labels, capacity: p.capacity, alive: p.alive)
    }

    func reserve(_ t: TaskRecord, on propletID: String) {
        ledger.reserve(.task(t.id), t.spec.resources, on: propletID)
    }

    func release(_ t: TaskRecord) {
        guard ledger.release(.task(t.id)) != nil else { return }
        unreported[t.id] = nil
        dispatchedAt[t.id] = nil
    }

    // MARK: Scheduling

    /// Places pending tasks, oldest first, in one store transaction; sends their starts.
    @discardableResult
    public func schedulePending() -> Int {
        guard !pendingQueue.isEmpty else { return 0 }
        let now = WallClock.now()
        var changed: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        var starts: [(StartTask, String)] = []
        var still: [String] = []
        still.reserveCapacity(pendingQueue.count)
        // Most free of any alive node, per dimension: a task above it cannot fit now, which
        // skips the scan when the fleet is full.
        var bound = ledger.maxFree()
        for id in pendingQueue {
            guard var t = active[id], t.state == .pending else { continue }
            let r = t.spec.resources
            if !(bound.slots > 0 && bound.resources.holds(r)) && t.reason != nil && t.spec.propletId == nil && t.spec.constraints.isEmpty {
                still.append(id)
                continue
            }
            let request = PlacementRequest(resources: r, constraints: t.spec.constraints, pinnedProplet: t.spec.propletId)
            switch scheduler.place(request, on: ledger.nodes) {
            case .place(let i):
                let node = ledger.nodes[i]
                t.state = .scheduled
                t.assignedProplet = node.id
                t.reason = nil
                t.phase = nil
                t.updatedAt = now
                reserve(t, on: node.id)
                dispatchedAt[id] = .now
                unreported[id] = 0
                active[id] = t
                changed.append(t)
                transitions.append(TaskTransition(taskId: id, state: .scheduled, attempt: t.attempt, at: now, reason: "placed on \(node.id)"))
                starts.append((startMessage(t, on: node.id), node.id))
                placements += 1
                if ledger.nodes[i].freeSlots == 0 || !ledger.nodes[i].free.holds(r) { bound = ledger.maxFree() }
            case .wait(let reason):
                if t.reason != reason {
                    t.reason = reason
                    t.updatedAt = now
                    active[id] = t
                    changed.append(t)
                }
                still.append(id)
            case .never(let reason):
                t.state = .failed
                t.reason = reason
                t.updatedAt = now
                t.finishedAt = now
                active[id] = nil
                changed.append(t)
                transitions.append(TaskTransition(taskId: id, state: .failed, attempt: t.attempt, at: now, reason: reason))
                logger.notice("task can never be placed", metadata: ["task": "\(id)", "reason": "\(reason)"])
            }
        }
        pendingQueue = still
        persist(changed, transitions)
        for (start, proplet) in starts {
            logger.info("task placed", metadata: ["task": "\(start.taskId)", "attempt": "\(start.attempt)", "proplet": "\(proplet)"])
            bus.send(start, to: proplet)
        }
        return starts.count
    }

    /// The start of `t`'s current attempt on `proplet`, with that proplet's placement epoch.
    func startMessage(_ t: TaskRecord, on proplet: String) -> StartTask {
        StartTask(taskId: t.id, attempt: t.attempt, name: t.spec.name, image: t.spec.image, command: t.spec.command, env: t.spec.env,
                  workdir: t.spec.workdir, user: t.spec.user, resources: t.spec.resources, timeoutSeconds: t.spec.timeoutSeconds, network: t.spec.network,
                  epoch: proplets[proplet]?.epoch ?? 0)
    }

    /// Writes through to the store and wakes watchers; returns whether the store has it. A store
    /// failure is logged: the in-memory state stays authoritative and the next change of the same
    /// task writes it again. (A result is the exception: it is applied and acknowledged only once
    /// stored, see ``handleResult(_:)``.)
    ///
    /// With `keepIfUnsaved` (the default), what the store refused is kept in ``unsaved`` and
    /// written later; without, the caller has not applied the change and drops it.
    @discardableResult
    func persist(_ tasks: [TaskRecord], _ transitions: [TaskTransition], notify: Bool = true, keepIfUnsaved: Bool = true) -> Bool {
        guard !tasks.isEmpty || !transitions.isEmpty else { return true }
        var stored = flushUnsaved()
        if stored {
            do {
                try store.saveTasks(tasks, transitions: transitions)
            } catch {
                stored = false
                logger.error("store write failed: kept in memory, written again later", metadata: ["error": "\(error)"])
            }
        }
        if !stored && keepIfUnsaved {
            for t in tasks { unsaved[t.id] = t }
            unsavedTransitions += transitions
        }
        if notify { for t in tasks { notifyWatchers(t) } }
        return stored
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

    /// Sends a failed attempt back to the queue when its restart policy allows, else fails it.
    /// With `onlyIfStored`, nothing changes unless the store took the change (a result, which
    /// the proplet sends again); returns whether it did.
    @discardableResult
    func requeueOrFail(_ task: TaskRecord, reason: String, at now: Double, onlyIfStored: Bool = false) -> Bool {
        var t = task
        var transitions: [TaskTransition] = []
        let policy = t.spec.restartPolicy
        if policy.mode == .onFailure && t.attempt < policy.maxAttempts && !t.stopRequested {
            t.attempt += 1
            t.state = .pending
            t.assignedProplet = nil
            t.phase = nil
            t.reason = "\(reason); restarting (attempt \(t.attempt) of \(policy.maxAttempts))"
            t.updatedAt = now
            transitions.append(TaskTransition(taskId: t.id, state: .pending, attempt: t.attempt, at: now, reason: t.reason))
        } else {
            // A stop asked for turns a failure with no result of its own into `stopped`; a real
            // result (the container ended before the stop reached it) stays what it was.
            t.state = t.stopRequested && t.result?.attempt != t.attempt ? .stopped : .failed
            t.reason = reason
            t.updatedAt = now
            t.finishedAt = now
            transitions.append(TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: now, reason: reason))
        }
        let stored = persist([t], transitions, notify: false, keepIfUnsaved: !onlyIfStored)
        if onlyIfStored && !stored { return false }
        release(task)
        if t.state == .pending {
            pendingQueue.append(t.id)
            active[t.id] = t
            logger.notice("task re-queued", metadata: ["task": "\(t.id)", "attempt": "\(t.attempt)", "reason": "\(reason)"])
        } else {
            active[t.id] = nil
            logger.notice(t.state == .stopped ? "task stopped" : "task failed", metadata: ["task": "\(t.id)", "attempt": "\(t.attempt)", "reason": "\(reason)"])
        }
        notifyWatchers(t)
        return stored
    }
}
