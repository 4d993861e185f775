import Foundation
import PropellerCore

/// A moment as the manager's clocks saw it: wall time for what is stored and shown, the
/// monotonic clock for what is measured (liveness, resend intervals). Events carry it, so a
/// transition depends on nothing but its inputs.
public struct Moment: Sendable, Equatable {
    public var wall: Double
    public var mono: ContinuousClock.Instant

    public init(wall: Double, mono: ContinuousClock.Instant) {
        self.wall = wall
        self.mono = mono
    }

    public static var now: Moment { Moment(wall: WallClock.now(), mono: .now) }
}

/// What can happen to the cluster: API commands, proplet reports, timer ticks and recovery
/// from the store. Where a rule needs a task's stored record (one that is no longer active),
/// the event carries it: ``ClusterState/apply(_:at:)`` reads nothing but its inputs.
public enum ClusterEvent: Sendable {
    /// A restarted manager's proplets and active tasks, as stored.
    case recovered(proplets: [PropletRecord], tasks: [TaskRecord])
    case announced(PropletAnnouncement)
    /// A heartbeat (or Last Will, or goodbye). `stored`: the stored records of tasks it reports
    /// running that are not active (an attempt given up with its proplet may be taken back).
    case heartbeat(PropletHeartbeat, stored: [String: TaskRecord])
    case phase(TaskEvent)
    /// A final result; `stored` is the task's stored record when it is not active.
    case result(TaskResult, stored: TaskRecord?)
    /// The liveness timer, with the manager's own broker link as it is now (nil: not known).
    case tick(brokerLink: BrokerLink?)
    /// An operator gives a proplet up now.
    case givenUp(proplet: String, reason: String)
    /// `propeller task create`: a new task, already stored (``ClusterState/newTask(_:id:start:at:configuration:)``
    /// makes it; the driver inserts it before the event is applied, so a store that refuses it
    /// changes nothing).
    case created(TaskRecord)
    /// `propeller task start`; `stored` when the task is not active.
    case start(String, stored: TaskRecord?)
    /// `propeller task stop`; `stored` when the task is not active.
    case stop(String, signal: Int32, grace: Double, stored: TaskRecord?)
    /// `propeller proplet delete`, already deleted from the store (``ClusterState/checkForget(_:)``
    /// says whether it may be).
    case forgetProplet(String)
    /// An operator opens (true) or closes (false) a proplet to new work.
    case setEligibility(String, eligible: Bool)
    /// An operator drains a proplet (``PropletDrain``), with a deadline in seconds from now.
    case drain(String, deadlineSeconds: Double?)
    /// An operator ends a drain: the proplet is eligible again.
    case cancelDrain(String)
    /// Namespaces' quotas, whole (at the start of a term and after every change).
    case quotas([String: NamespaceQuota])

    // Actors. The commands whose write must succeed first arrive already stored.

    /// A restarted manager's actors, their states, workers and inbox, as stored (after
    /// ``recovered(proplets:tasks:)``: workers take their room on their proplets again).
    case actorsRecovered(actors: [ActorRecord], states: [String: String], workers: [WorkerRecord], inbox: [ExecutionRecord])
    /// A new actor, stored (``ClusterState/newActor(_:id:at:configuration:)`` makes it).
    case actorCreated(ActorRecord)
    /// A changed actor, stored (``ClusterState/updatedActor(_:at:_:)`` makes it).
    case actorUpdated(ActorRecord)
    /// An actor deleted from the store, with its inbox, executions and workers.
    case actorDeleted(String)
    /// A stateful actor's state, stored.
    case actorStateSet(String, state: String)
    /// A message, in the inbox already.
    case messageQueued(ExecutionRecord)
    /// The driver could not read a run's message: the inbox no longer has it (`missing`), or
    /// the store failed.
    case messageUnreadable(String, missing: Bool)
    case workerReport(WorkerReport)
    case executionReport(ExecutionReport)
    /// `propeller actor workers add`: at least `count` workers.
    case ensureWorkers(actor: String, count: Int)
    case retireWorker(actor: String, worker: String)
    /// Drops an actor's queued messages.
    case purge(actor: String)
    /// Force-quits an execution; `stored` when it is not active.
    case killExecution(actor: String, execution: String, stored: ExecutionRecord?)
    /// The autoscaler's timer.
    case autoscale
}

/// The manager's own connection to the broker.
public struct BrokerLink: Sendable, Equatable {
    public var connected: Bool
    /// How many times it has connected (a change: it reconnected).
    public var connections: Int

    public init(connected: Bool, connections: Int) {
        self.connected = connected
        self.connections = connections
    }
}

/// What a transition asks the world to do. ``TaskService`` commits the store writes of an event
/// first (in one transaction), then sends messages, acknowledges results and wakes watchers, in
/// the order given.
public enum ClusterEffect: Sendable, Equatable {
    /// Changed tasks and their transitions.
    case save([TaskRecord], [TaskTransition])
    case saveProplet(PropletRecord)
    case start(StartTask, to: String)
    case stop(StopTask, to: String)
    /// "Your result is stored": sent only once the store has every write of the task.
    case acknowledge(TaskAttempt, to: String)
    case confirm(PropletEpoch)
    /// A task changed: its `--wait` watchers and log followers hear of it.
    case notify(TaskRecord)
    /// The answer to a command.
    case reply(ClusterReply)
    case log(ClusterLog)

    /// A write of the actor layer (they go to the store in order).
    case write(ActorStoreWrite)
    case worker(WorkerCommand, to: String)
    /// A run (the driver reads the message's body from the inbox as it sends it) or a kill.
    case execution(ExecutionCommand, to: String)
    /// An execution ended: its synchronous senders hear of it.
    case ended(ExecutionRecord)
}

public enum ClusterReply: Sendable, Equatable {
    case task(TaskRecord)
    case actor(ActorRecord)
    case execution(ExecutionRecord)
    case workers([WorkerRecord])
    case count(Int)
    case proplet(PropletRecord)
}

/// A log line a transition asks for (the driver writes it with swift-log).
public struct ClusterLog: Sendable, Equatable {
    public enum Level: Sendable, Equatable { case debug, info, notice, warning, error }
    public var level: Level
    public var message: String
    public var metadata: [String: String]
}

/// Where a worker's reservation was made, or why it could not be.
public enum WorkerPlacement: Sendable, Equatable {
    case placed(propletID: String)
    /// Nothing fits now; a later call may succeed.
    case wait(reason: String)
    /// No proplet could ever hold it.
    case never(reason: String)
}

/// The cluster as the manager knows it, as one value: the proplets with their connections
/// (``PropletConnection``), the active tasks and the pending queue, and one allocation table
/// (``AllocationTable``) in which each allocation is a task attempt or an actor worker.
///
/// It changes only through ``apply(_:at:)``, a pure function from an event to the effects the
/// world must see. Tables of events (`ClusterStateTests`) and a randomized comparison with a
/// small reference model drive it directly; ``TaskService`` is the one actor that applies
/// events in order and carries out their effects. ARCHITECTURE.md, "State machines", has the
/// transitions.
public struct ClusterState: Sendable {
    public let configuration: ManagerConfiguration
    var scheduler: Scheduler
    /// Pending, scheduled, running and unknown tasks.
    public internal(set) var active: [String: TaskRecord] = [:]
    /// Pending task ids, oldest first.
    public internal(set) var pendingQueue: [String] = []
    public internal(set) var ledger = AllocationTable()
    public internal(set) var proplets: [String: PropletRecord] = [:]
    public internal(set) var connections: [String: PropletConnection] = [:]
    /// The manager's own broker link as the last tick saw it.
    var brokerLinkDown = false
    var brokerConnections = 0
    /// Per task: how long its proplet has not listed it (``Silence``), and when its start (or
    /// stop) was last sent.
    var unreported: [String: Silence] = [:]
    var dispatchedAt: [String: ContinuousClock.Instant] = [:]
    public internal(set) var placements: UInt64 = 0
    /// Per proplet: heartbeats in a row that asked for the epoch (the answers may not reach it).
    var epochAsks: [String: Int] = [:]
    /// Actors, their inboxes, executions and workers.
    public internal(set) var actors = ActorTable()
    /// Namespaces' quotas (only those that limit something).
    public internal(set) var quotas: [String: NamespaceQuota] = [:]

    /// The event being applied: its time and the effects so far.
    var now = Moment(wall: 0, mono: .now)
    var effects: [ClusterEffect] = []

    /// Heartbeats in a row that did not list a task: how many, since when, and how often its
    /// start was sent again meanwhile. Only silence that lasts counts: heartbeats queued in the
    /// manager's broker session while it was away arrive in a burst, all from before the start
    /// reached the proplet.
    struct Silence: Sendable {
        var count = 0
        var since: ContinuousClock.Instant
        var resends = 0
    }

    public init(configuration: ManagerConfiguration) {
        self.configuration = configuration
        scheduler = Scheduler(policy: configuration.policy)
    }

    /// Applies `event`, which happened at `now`; returns what must follow, in order. Throws
    /// (changing nothing) when a command is refused: an unknown task, a conflicting state.
    public mutating func apply(_ event: ClusterEvent, at now: Moment) throws -> [ClusterEffect] {
        self.now = now
        effects = []
        defer { effects = [] }
        switch event {
        case .recovered(let proplets, let tasks): recover(proplets, tasks)
        case .announced(let a):
            register(a)
            schedulePending()
        case .heartbeat(let hb, let stored): heartbeat(hb, stored: stored)
        case .phase(let e): phase(e)
        case .result(let r, let stored): result(r, stored: stored)
        case .tick(let link):
            tick(link)
            if link?.connected ?? true { checkDrains() }
        case .givenUp(let id, let reason): connectionEvent(.givenUp(reason: reason), to: id)
        case .created(let t): created(t)
        case .start(let id, let stored): try start(id, stored: stored)
        case .stop(let id, let signal, let grace, let stored): try stop(id, signal: signal, grace: grace, stored: stored)
        case .forgetProplet(let id): try forgetProplet(id)
        case .setEligibility(let id, let eligible): try setEligibility(id, eligible: eligible)
        case .drain(let id, let deadline): try startDrain(id, deadlineSeconds: deadline)
        case .cancelDrain(let id): try cancelDrain(id)
        case .actorsRecovered(let stored, let states, let workers, let inbox): recoverActors(stored, states: states, workers: workers, inbox: inbox)
        case .actorCreated(let a): actorCreated(a)
        case .actorUpdated(let a): actorUpdated(a)
        case .actorDeleted(let id): actorDeleted(id)
        case .actorStateSet(let id, let json): actors.states[id] = json
        case .messageQueued(let e): messageQueued(e)
        case .messageUnreadable(let id, let missing): messageUnreadable(id, missing: missing)
        case .workerReport(let r): workerReport(r)
        case .executionReport(let r): executionReport(r)
        case .ensureWorkers(let id, let count): try ensureWorkers(id, count: count)
        case .retireWorker(let id, let worker): try retireWorker(id, worker)
        case .purge(let id): try purge(id)
        case .killExecution(let id, let execution, let stored): try kill(id, execution, stored: stored)
        case .autoscale: autoscale()
        case .quotas(let q): setQuotas(q)
        }
        return effects
    }

    mutating func emit(_ effect: ClusterEffect) { effects.append(effect) }

    mutating func log(_ level: ClusterLog.Level, _ message: String, _ metadata: [String: String] = [:]) {
        emit(.log(ClusterLog(level: level, message: message, metadata: metadata)))
    }

    /// Stores changed tasks and their transitions, and tells their watchers.
    mutating func save(_ tasks: [TaskRecord], _ transitions: [TaskTransition], notify: Bool = true) {
        guard !tasks.isEmpty || !transitions.isEmpty else { return }
        emit(.save(tasks, transitions))
        if notify { for t in tasks { emit(.notify(t)) } }
    }

    /// The newest version of task `id` this event wrote (for a reply when it is no longer active).
    func written(_ id: String) -> TaskRecord? {
        for effect in effects.reversed() {
            switch effect {
            case .save(let tasks, _):
                if let t = tasks.last(where: { $0.id == id }) { return t }
            default: continue
            }
        }
        return nil
    }

    // MARK: Recovery

    /// Proplets the store has as alive or disconnected count as alive from now: each gets a full
    /// liveness period to heartbeat (and then the grace) before its work is given up.
    mutating func recover(_ stored: [PropletRecord], _ tasks: [TaskRecord]) {
        for p in stored {
            addNode(p)
            connections[p.id] = p.state == "lost" || (p.state == nil && !p.alive) ? .lost(reason: p.reason ?? "lost") : .alive(lastSeen: now.mono)
        }
        for t in tasks {
            active[t.id] = t
            switch t.state {
            case .pending: pendingQueue.append(t.id)
            case .scheduled, .running, .unknown:
                if let p = t.assignedProplet, ledger.contains(p) {
                    reserve(t, on: p)
                    dispatchedAt[t.id] = now.mono
                } else {
                    requeueOrFail(t, reason: "proplet \(t.assignedProplet ?? "?") is unknown after a restart")
                }
            default: break
            }
        }
        log(.info, "recovered state", ["proplets": "\(ledger.nodes.count)", "active_tasks": "\(active.count)", "pending": "\(pendingQueue.count)"])
        schedulePending()
    }

    // MARK: Ledger

    mutating func addNode(_ p: PropletRecord) {
        proplets[p.id] = p
        ledger.upsert(p.id, labels: p.labels, capacity: p.capacity, alive: p.alive, hostVolumes: p.hostVolumes ?? [], networks: p.networks ?? [],
                      namespaces: p.namespaces)
        ledger.setClosed(p.id, Self.closed(p))
    }

    mutating func reserve(_ t: TaskRecord, on propletID: String) {
        ledger.reserve(.task(t.id), t.spec.resources, ports: (t.ports ?? []).map(\.hostKey), on: propletID)
    }

    mutating func release(_ t: TaskRecord) {
        guard ledger.release(.task(t.id)) != nil else { return }
        unreported[t.id] = nil
        dispatchedAt[t.id] = nil
    }

    // MARK: Scheduling

    /// Places pending tasks, oldest first; their writes are one transaction, their starts follow.
    mutating func schedulePending() {
        guard !pendingQueue.isEmpty else { return }
        var changed: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        var starts: [(StartTask, String)] = []
        var still: [String] = []
        still.reserveCapacity(pendingQueue.count)
        // Most free of any alive node, per dimension: a task above it cannot fit now, which
        // skips the scan when the fleet is full.
        var bound = ledger.maxFree()
        // What each namespace with a quota has placed, counted once per pass (nothing when no
        // namespace has a quota).
        var reserved = quotas.isEmpty ? [:] : namespaceReservations()
        for id in pendingQueue {
            guard var t = active[id], t.state == .pending else { continue }
            let r = t.spec.resources
            if !(bound.slots > 0 && bound.resources.holds(r)) && t.reason != nil && t.spec.propletId == nil && t.spec.constraints.isEmpty
                && t.spec.volumes == nil && t.spec.publish == nil && !NetworkName.isCNI(t.spec.network) {
                still.append(id)
                continue
            }
            var request = PlacementRequest(resources: r, constraints: t.spec.constraints, pinnedProplet: t.spec.propletId, volumes: t.spec.volumes ?? [],
                                           network: t.spec.network, ports: t.spec.publish ?? [])
            request.namespace = t.spec.namespace.orDefaultNamespace
            // Its namespace's quota first: over it, the task waits whatever room the fleet has.
            let decision = quotaWait(t, reserved).map { Scheduler.Decision.wait($0) } ?? scheduler.place(request, on: ledger.nodes)
            switch decision {
            case .place(let i):
                let node = ledger.nodes[i]
                t.status = .scheduled(on: node.id, phase: nil)
                t.ports = t.spec.publish.map { ledger.resolvePorts($0, on: node.id) }
                t.reason = nil
                t.updatedAt = now.wall
                reserve(t, on: node.id)
                if !quotas.isEmpty { reserved[t.spec.namespace.orDefaultNamespace, default: NamespaceReservation()].add(t.spec.resources) }
                dispatchedAt[id] = now.mono
                unreported[id] = nil
                active[id] = t
                changed.append(t)
                transitions.append(TaskTransition(taskId: id, state: .scheduled, attempt: t.attempt, at: now.wall, reason: "placed on \(node.id)"))
                starts.append((startMessage(t, on: node.id), node.id))
                placements += 1
                if ledger.nodes[i].freeSlots == 0 || !ledger.nodes[i].free.holds(r) { bound = ledger.maxFree() }
            case .wait(let reason):
                if t.reason != reason {
                    t.reason = reason
                    t.updatedAt = now.wall
                    active[id] = t
                    changed.append(t)
                }
                still.append(id)
            case .never(let reason):
                t.status = .failed(on: nil)
                t.reason = reason
                t.updatedAt = now.wall
                t.finishedAt = now.wall
                active[id] = nil
                changed.append(t)
                transitions.append(TaskTransition(taskId: id, state: .failed, attempt: t.attempt, at: now.wall, reason: reason))
                log(.notice, "task can never be placed", ["task": id, "reason": reason])
            }
        }
        pendingQueue = still
        save(changed, transitions)
        for (start, proplet) in starts {
            log(.info, "task placed", ["task": start.taskId, "attempt": "\(start.attempt)", "proplet": proplet])
            emit(.start(start, to: proplet))
        }
    }

    /// The start of `t`'s current attempt on `proplet`, with that proplet's placement epoch.
    func startMessage(_ t: TaskRecord, on proplet: String) -> StartTask {
        StartTask(taskId: t.id, attempt: t.attempt, name: t.spec.name, image: t.spec.image, command: t.spec.command, env: t.spec.env,
                  workdir: t.spec.workdir, user: t.spec.user, resources: t.spec.resources, timeoutSeconds: t.spec.timeoutSeconds, network: t.spec.network,
                  epoch: proplets[proplet]?.epoch ?? 0, volumes: t.spec.volumes, tmpfs: t.spec.tmpfs, secrets: t.spec.secrets,
                  publish: t.ports, artifacts: t.spec.artifacts, output: t.spec.output)
    }

    /// Sends a failed attempt back to the queue when its restart policy allows, else fails it
    /// (or, when a stop was asked for and the attempt has no result of its own, stops it).
    mutating func requeueOrFail(_ task: TaskRecord, reason: String) {
        var t = task
        let policy = t.spec.restartPolicy
        if policy.mode == .onFailure && t.attempt < policy.maxAttempts && !t.stopRequested {
            t.attempt += 1
            t.status = .pending
            t.reason = "\(reason); restarting (attempt \(t.attempt) of \(policy.maxAttempts))"
            t.updatedAt = now.wall
            release(task)
            pendingQueue.append(t.id)
            active[t.id] = t
            save([t], [TaskTransition(taskId: t.id, state: .pending, attempt: t.attempt, at: now.wall, reason: t.reason)])
            log(.notice, "task re-queued", ["task": t.id, "attempt": "\(t.attempt)", "reason": reason])
        } else {
            // A real result (the container ended before the stop reached it) stays what it was.
            t.status = t.stopRequested && t.result?.attempt != t.attempt ? .stopped(on: t.assignedProplet) : .failed(on: t.assignedProplet)
            t.reason = reason
            t.updatedAt = now.wall
            t.finishedAt = now.wall
            release(task)
            active[t.id] = nil
            save([t], [TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: now.wall, reason: reason)])
            log(.notice, t.state == .stopped ? "task stopped" : "task failed", ["task": t.id, "attempt": "\(t.attempt)", "reason": reason])
        }
    }

    /// Whether proplet `id` may be forgotten: only a lost one (an alive one would announce itself
    /// again at once).
    public func checkForget(_ id: String) throws {
        guard proplets[id] != nil else { throw APIError.notFound("no proplet \(id)") }
        if connections[id]?.isLost == false {
            throw APIError.conflict("proplet \(id) is \(connections[id]?.name ?? "alive"): stop it first, or wait until it is lost (a running proplet registers again)")
        }
    }

    mutating func forgetProplet(_ id: String) throws {
        try checkForget(id)
        proplets[id] = nil
        connections[id] = nil
        ledger.remove(id)
        log(.info, "proplet deleted", ["proplet": id])
    }

    // MARK: Reads

    /// Proplets with their reservations filled in.
    public func propletList() -> [PropletRecord] {
        ledger.nodes.compactMap { node in
            guard var p = proplets[node.id] else { return nil }
            p.allocated = node.allocated
            p.taskCount = Int(node.taskCount)
            return p
        }
    }

    /// Whether work placed on this proplet still counts (alive, or disconnected within the grace).
    public func holdsWork(_ propletID: String) -> Bool { connections[propletID].map { !$0.isLost } ?? false }
}
