import Foundation
import Logging
import PropellerCore

/// The manager's messages to proplets about actors (``MQTTControlBus`` sends them).
public protocol ActorBus: Sendable {
    func send(_ command: WorkerCommand, to propletID: String)
    func send(_ command: ExecutionCommand, to propletID: String)
}

/// Tunables of the actor layer.
public struct ActorConfiguration: Sendable {
    /// Message bodies above this are refused (413).
    public var messageLimit = 1 << 20
    /// Results kept per execution.
    public var resultLimit = 256 << 10
    /// An idle worker above the actor's `min_workers` is retired after this long.
    public var workerIdleTTL: Duration = .seconds(300)
    /// Proplets' heartbeat interval (a worker a proplet stops listing is lost after two).
    public var livenessInterval: Duration = .seconds(5)
    /// Memory reserved per worker when the actor does not say.
    public var defaultMemoryBytes: UInt64 = 256 << 20
    /// Processes reserved and enforced per worker when the actor does not say.
    public var defaultPids: UInt64 = 1024
    /// Longest wait of a synchronous message.
    public var maxSyncTimeout: Duration = .seconds(300)

    public init() {}
}

/// Actors in the spirit of TACC's Abaco: an actor is an image; each message posted to its inbox
/// runs as an execution on a warm worker (a proplet slot with the image pulled and unpacked and
/// the resources reserved through the task scheduler's ledger).
///
/// Active state (actors, queues, running executions, workers) lives here and is written
/// through to the store; the inbox in the store is the truth a restarted manager resumes from.
public actor ActorService {
    let store: any ActorStore
    let tasks: TaskService
    let bus: any ActorBus
    let configuration: ActorConfiguration
    let logger: Logger

    var actors: [String: ActorRecord] = [:]
    /// Per actor: queued execution ids, oldest first.
    var queues: [String: MessageQueue] = [:]
    /// Submitted and running executions.
    var active: [String: ExecutionRecord] = [:]
    var workers: [String: WorkerRecord] = [:]
    /// Stateful actors' states (JSON text).
    var states: [String: String] = [:]
    /// Per worker: heartbeats in a row that did not list it (or showed it idle while busy).
    var misses: [String: Int] = [:]
    var dispatchedAt: [String: ContinuousClock.Instant] = [:]
    /// Per worker: when it was placed (or adopted after a restart); heartbeats that do not list it
    /// count only after a grace period from then.
    var placedAt: [String: ContinuousClock.Instant] = [:]
    /// Execution writes the store refused (its disk full, say), by execution, in order: written
    /// before the next and on every tick, and read before the store.
    var unsaved: [String: ExecutionWrite] = [:]
    var unsavedOrder: [String] = []
    /// Synchronous senders waiting for an execution to end.
    var waiters: [String: [UUID: CheckedContinuation<ExecutionRecord?, Never>]] = [:]
    /// Their timers, cancelled when the execution ends first.
    var waiterTimers: [UUID: Task<Void, Never>] = [:]

    public init(store: any ActorStore, tasks: TaskService, bus: any ActorBus, configuration: ActorConfiguration = ActorConfiguration(),
                logger: Logger = Logger(label: "propeller.actors")) {
        self.store = store
        self.tasks = tasks
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
    }

    /// Loads actors, workers and inboxes. Workers keep their proplets (their reservations are
    /// made again there); executions that were running go back to the front of their queues.
    public func recover() async throws {
        for a in try store.actors() {
            actors[a.id] = a
            queues[a.id] = MessageQueue()
            if !a.spec.stateless { states[a.id] = try store.actorState(actorID: a.id) }
        }
        let now = ContinuousClock.now
        for var w in try store.workers() {
            guard let a = actors[w.actorId], let p = w.propletId else { continue }
            let resources = w.resources ?? a.spec.resources
            if case .placed = await tasks.reserveWorker(w.id, resources: resources, pinned: p) {
                w.resources = resources
                w.status = w.status == .busy ? .ready : w.status
                w.executionId = nil
                workers[w.id] = w
                placedAt[w.id] = now
            } else {
                try? store.deleteWorker(id: w.id)
            }
        }
        for (e, _) in try store.inbox() {
            guard actors[e.actorId] != nil else { continue }
            var e = e
            if e.status == .running {
                e.status = .submitted
                e.workerId = nil
                e.propletId = nil
                try? store.saveExecution(e)
            }
            active[e.id] = e
            queues[e.actorId, default: MessageQueue()].append(e.id)
        }
        logger.info("recovered actors", metadata: ["actors": "\(actors.count)", "workers": "\(workers.count)", "queued": "\(active.count)"])
        for id in actors.keys.sorted() {
            await scale(id)
            dispatch(id)
        }
    }

    // MARK: Actors

    public func create(_ spec: ActorSpec) async throws -> ActorRecord {
        let now = WallClock.now()
        var spec = spec
        if spec.resources.memoryBytes == 0 { spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if spec.resources.pids == 0 { spec.resources.pids = configuration.defaultPids }
        let actor = ActorRecord(id: Self.newID(), spec: spec, createdAt: now, updatedAt: now)
        try store.saveActor(actor)
        actors[actor.id] = actor
        queues[actor.id] = MessageQueue()
        if !spec.stateless {
            states[actor.id] = "{}"
            try store.setActorState(actorID: actor.id, state: "{}")
        }
        logger.info("actor registered", metadata: ["actor": "\(actor.id)", "name": "\(spec.name)", "image": "\(spec.image)"])
        await scale(actor.id)
        return actors[actor.id] ?? actor
    }

    public func list() -> [ActorRecord] { actors.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) } }

    public func actor(_ id: String) throws -> ActorRecord {
        guard let a = actors[id] else { throw APIError.notFound("no actor \(id)") }
        return a
    }

    /// Applies `change` to the spec; a change to what workers run bumps the revision and
    /// replaces the workers (queued messages wait for the new ones).
    public func update(_ id: String, _ change: (inout ActorSpec) throws -> Void) async throws -> ActorRecord {
        var a = try actor(id)
        var spec = a.spec
        try change(&spec)
        if spec.resources.memoryBytes == 0 { spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if spec.resources.pids == 0 { spec.resources.pids = configuration.defaultPids }
        if spec.stateless != a.spec.stateless {
            throw APIError.conflict("stateless: cannot change on a registered actor; register a new one")
        }
        let replace = spec.needsNewWorkers(comparedTo: a.spec)
        a.spec = spec
        a.updatedAt = WallClock.now()
        if replace {
            a.revision += 1
            a.status = .submitted
            a.message = nil
        }
        try store.saveActor(a)
        actors[id] = a
        if replace {
            logger.info("actor changed: replacing its workers", metadata: ["actor": "\(id)", "revision": "\(a.revision)"])
            for w in workers.values where w.actorId == id && w.revision < a.revision { retire(w.id) }
        }
        await scale(id)
        dispatch(id)
        return actors[id] ?? a
    }

    /// Deletes an actor: its workers are retired (running executions killed), its inbox,
    /// executions and state removed.
    public func delete(_ id: String) throws {
        _ = try actor(id)
        for w in workers.values where w.actorId == id {
            if let eid = w.executionId, let p = w.propletId {
                bus.send(ExecutionCommand(action: .kill, executionId: eid, attempt: active[eid]?.attempt ?? 1, workerId: w.id), to: p)
            }
            retire(w.id)
        }
        try store.deleteActor(id: id)
        actors[id] = nil
        queues[id] = nil
        states[id] = nil
        for e in active.values where e.actorId == id {
            active[e.id] = nil
            var gone = e
            gone.status = .error
            gone.error = "the actor was deleted"
            wake(gone)
        }
        logger.info("actor deleted", metadata: ["actor": "\(id)"])
    }

    // MARK: State

    public func state(_ id: String) throws -> String {
        let a = try actor(id)
        guard !a.spec.stateless else { throw APIError.conflict("actor \(id) is stateless: it has no state") }
        return states[id] ?? "{}"
    }

    public func setState(_ id: String, _ json: String) throws {
        let a = try actor(id)
        guard !a.spec.stateless else { throw APIError.conflict("actor \(id) is stateless: it has no state") }
        try store.setActorState(actorID: id, state: json)
        states[id] = json
    }

    static func newID() -> String { UUID().uuidString.lowercased() }
}

/// A FIFO of execution ids that does not move its elements on every removal.
struct MessageQueue: Sendable {
    private var items: [String] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { count == 0 }
    var ids: ArraySlice<String> { items[head...] }

    mutating func append(_ id: String) { items.append(id) }

    /// Puts a message back at the front (a re-run keeps its place).
    mutating func prepend(_ id: String) {
        if head > 0 {
            head -= 1
            items[head] = id
        } else {
            items.insert(id, at: 0)
        }
    }

    mutating func popFirst() -> String? {
        guard head < items.count else { return nil }
        let id = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return id
    }

    mutating func remove(_ id: String) {
        guard let i = items[head...].firstIndex(of: id) else { return }
        items.remove(at: i)
    }

    mutating func removeAll() -> [String] {
        let all = Array(items[head...])
        items = []
        head = 0
        return all
    }
}
