import Foundation
import PropellerCore
import Tracing

/// What the API does with tasks.
extension TaskService {
    /// Creates a task (state `created`), and queues it at once when `start` is set. The task
    /// exists once the store has it (with the next batch); a store that refuses it refuses the
    /// command, and nothing changes.
    public func create(_ spec: TaskSpec, start: Bool) async throws -> TaskRecord {
        try requireLease()
        if let refusal = storeRefusal {
            throw PropellerError(.resourceExhausted, "the store has not taken earlier writes yet (is its disk full?): \(refusal); try again")
        }
        var spec = spec
        // The request's span (the API's middleware) is the root of the task's trace.
        if spec.trace == nil { spec.trace = traces.carrier(ServiceContext.current ?? .topLevel) }
        let (t, transitions) = ClusterState.newTask(spec, id: UUID().uuidString.lowercased(), start: start, at: WallClock.now(), configuration: configuration)
        if start && traces.enabled { queuedAt[t.id] = WallClock.now() }
        newTasks.append((t, transitions))
        if let error = await written() { throw error }
        let reply = try apply(.created(t))
        try await commandWritten()
        return try taskReply(reply)
    }

    /// Queues a created or finished task for (another) run.
    public func start(_ id: String) async throws -> TaskRecord {
        if traces.enabled { queuedAt[id] = WallClock.now() }
        let reply = try apply(.start(id, stored: state.active[id] == nil ? try stored(id) : nil))
        try await commandWritten()
        return try taskReply(reply)
    }

    /// Stops a task: a queued one at once, a placed one by asking its proplet (the state changes
    /// when the proplet reports the container gone).
    public func stop(_ id: String, signal: Int32 = 15, grace: Double = 10) async throws -> TaskRecord {
        let reply = try apply(.stop(id, signal: signal, grace: grace, stored: state.active[id] == nil ? try stored(id) : nil))
        try await commandWritten()
        return try taskReply(reply)
    }

    private func taskReply(_ reply: ClusterReply?) throws -> TaskRecord {
        guard case .task(let t) = reply else { throw PropellerError(.internalError, "the command had no task to answer with") }
        return t
    }

    /// Removes a task that is not active, with its history and logs.
    public func delete(_ id: String) async throws {
        if let t = state.active[id] { throw APIError.conflict("task \(id) is \(t.state.rawValue): stop it first") }
        // Its last writes first (a transition written after the delete would have no task).
        try await requireWritesTaken()
        if let t = state.active[id] { throw APIError.conflict("task \(id) is \(t.state.rawValue): stop it first") }
        guard try stored(id) != nil else { throw APIError.notFound("no task \(id)") }
        try store.deleteTask(id: id)
        logger.info("task deleted", metadata: ["task": "\(id)"])
    }

    /// Replaces a task's spec while it is not active.
    public func update(_ id: String, _ change: (inout TaskSpec) throws -> Void) async throws -> TaskRecord {
        try await requireWritesTaken()
        if let t = state.active[id] { throw APIError.conflict("task \(id) is \(t.state.rawValue): it can be changed only when created or finished") }
        guard var t = try stored(id) else { throw APIError.notFound("no task \(id)") }
        try change(&t.spec)
        if t.spec.resources.memoryBytes == 0 { t.spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if t.spec.resources.pids == 0 { t.spec.resources.pids = configuration.defaultPids }
        t.updatedAt = WallClock.now()
        try store.updateSpec(t)
        return t
    }

    /// The task as it is now: from memory when active, else from the store.
    public func task(_ id: String) throws -> TaskRecord {
        if var t = state.active[id] {
            if t.phase == TaskEvent.Phase.pulling.rawValue { t.pull = pullReports[id] }
            return t
        }
        guard let t = try stored(id) else { throw APIError.notFound("no task \(id)") }
        return t
    }

    /// A stream of the task's states from now on; finishes when it ends.
    public func watch(_ id: String) throws -> AsyncStream<TaskRecord> {
        let t = try task(id)
        // Bounded, and forgotten when the reader goes away: a client that stops reading, or
        // disconnects, costs the manager nothing after that. Only the newest states matter.
        let (stream, continuation) = AsyncStream<TaskRecord>.makeStream(bufferingPolicy: .bufferingNewest(Self.listenerBuffer))
        continuation.yield(t)
        if t.state.isTerminal || t.state == .created {
            continuation.finish()
        } else {
            let key = UUID()
            watchers[id, default: [:]][key] = continuation
            continuation.onTermination = { [weak self] _ in Task { await self?.forgetListener(of: id, key) } }
        }
        return stream
    }

    /// States a watcher may have waiting before older ones are dropped (only the newest matter).
    static let listenerBuffer = 1024

    func forgetListener(of id: String, _ key: UUID) {
        watchers[id]?[key] = nil
        if watchers[id]?.isEmpty == true { watchers[id] = nil }
        followers[id]?[key] = nil
        if followers[id]?.isEmpty == true { followers[id] = nil }
    }

    /// New log blocks of an active task as they arrive; finishes when the task ends. Each reader
    /// may have ``LogFollower/queueBytes`` waiting (see ``LogFollower``).
    public func follow(_ id: String) throws -> LogFollowStream {
        let t = try task(id)
        let (follower, stream) = LogFollower.make()
        if state.active[t.id] == nil {
            follower.finish()
        } else {
            let key = UUID()
            followers[id, default: [:]][key] = follower
            follower.continuation.onTermination = { [weak self] _ in Task { await self?.forgetListener(of: id, key) } }
        }
        return stream
    }

    /// Pending tasks (the queue length of /metrics).
    public var queueLength: Int { state.pendingQueue.count }

    /// Proplets with their reservations filled in.
    public func propletList() -> [PropletRecord] { state.propletList() }

    public func proplet(_ id: String) throws -> PropletRecord {
        guard let p = state.propletList().first(where: { $0.id == id }) else { throw APIError.notFound("no proplet \(id)") }
        return p
    }

    /// Every named volume of every proplet, as their heartbeats last said.
    public func namedVolumes() -> [(proplet: String, volume: NamedVolumeInfo)] {
        state.propletList().flatMap { p in (p.volumes ?? []).map { (p.id, $0) } }
    }

    /// Asks `proplet` to remove its named volume `name`: refused when the proplet is away, does
    /// not report it, or something uses it now. The proplet removes it unless a task took it up
    /// in between; its next heartbeat shows the outcome.
    public func removeVolume(_ name: String, on proplet: String) throws {
        let p = try self.proplet(proplet)
        guard let volume = p.volumes?.first(where: { $0.name == name }) else { throw APIError.notFound("proplet \(proplet) has no named volume \(name)") }
        guard p.alive else { throw APIError.conflict("proplet \(proplet) is \(p.state ?? "away"): it removes its volumes when it is back") }
        guard volume.inUse == 0 else { throw APIError.conflict("named volume \(name) on \(proplet) is in use by \(volume.inUse) task(s)") }
        try requireLease()
        bus.send(VolumeCommand(action: .remove, name: name), to: proplet)
        logger.notice("named volume removal asked", metadata: ["proplet": "\(proplet)", "volume": "\(name)"])
    }

    /// Opens (true) or closes (false) a proplet to new work; what runs there goes on.
    public func setEligibility(_ id: String, eligible: Bool) async throws -> PropletRecord {
        try await propletReply(apply(.setEligibility(id, eligible: eligible)))
    }

    /// Drains a proplet (see ``PropletDrain``): closed to new work, its actor workers move, and
    /// at `deadlineSeconds` from now what still runs there is stopped and goes where its
    /// restart policy sends it. Again on a draining proplet: a new deadline.
    public func drain(_ id: String, deadlineSeconds: Double?) async throws -> PropletRecord {
        try await propletReply(apply(.drain(id, deadlineSeconds: deadlineSeconds)))
    }

    /// Ends a drain: the proplet is eligible again.
    public func cancelDrain(_ id: String) async throws -> PropletRecord {
        try await propletReply(apply(.cancelDrain(id)))
    }

    private func propletReply(_ reply: ClusterReply?) async throws -> PropletRecord {
        try await commandWritten()
        guard case .proplet(let p) = reply else { throw PropellerError(.internalError, "the command had no proplet to answer with") }
        return try proplet(p.id)
    }

    /// Forgets a proplet that is lost (an alive one would announce itself again at once).
    public func deleteProplet(_ id: String) async throws {
        try state.checkForget(id)
        try await requireWritesTaken()  // a write of its record after the delete would bring it back
        try state.checkForget(id)
        try store.deleteProplet(id: id)
        try apply(.forgetProplet(id))
        try await commandWritten()
    }
}

extension TaskService {
    public func listTasks(offset: Int, limit: Int, state: TaskState?, namespace: String? = nil) throws -> (Int, [TaskRecord]) {
        let (total, stored) = try store.tasks(offset: offset, limit: limit, state: state, namespace: namespace)
        // Active tasks: the in-memory copy is the freshest.
        return (total, stored.map { self.state.active[$0.id] ?? unsaved[$0.id] ?? $0 })
    }

    public func history(_ id: String) throws -> [TaskTransition] {
        try store.history(taskID: id) + unsavedTransitions.filter { $0.taskId == id }
    }

    public func logs(_ id: String) async throws -> TaskLogs {
        _ = try task(id)
        // A final result's output goes to the store with its task's write.
        if hasUnsavedWrites(id) { _ = await written() }
        return try store.logs(taskID: id)
    }

    public func taskCountsForMetrics() throws -> [TaskState: Int] { try store.taskCounts() }
}

/// What a namespace holds and uses now.
public struct NamespaceUsage: Codable, Sendable, Hashable {
    public var tasks = 0
    /// Pending, scheduled, running or unknown.
    public var activeTasks = 0
    /// Reserved by its active tasks.
    public var cpuMillis: UInt64 = 0
    public var memoryBytes: UInt64 = 0
    public var actors = 0
    public var workers = 0
    public var secrets = 0
}

extension TaskService {
    /// Namespaces' quotas, whole: tasks waiting for room in their namespace are looked at again.
    public func setQuotas(_ quotas: [String: NamespaceQuota]) {
        _ = try? apply(.quotas(quotas))
    }

    /// The namespace's tasks (all of them, from the store) and what its active tasks, actors
    /// and workers reserve (from memory).
    public func usage(ofNamespace namespace: String) throws -> NamespaceUsage {
        var usage = NamespaceUsage()
        usage.tasks = try store.tasks(offset: 0, limit: 1, state: nil, namespace: namespace).total
        for t in state.active.values where t.spec.namespace.orDefaultNamespace == namespace {
            usage.activeTasks += 1
            usage.cpuMillis += t.spec.resources.cpuMillis
            usage.memoryBytes += t.spec.resources.memoryBytes
        }
        for actor in actorList() where actor.spec.namespace.orDefaultNamespace == namespace {
            usage.actors += 1
            let workers = (try? state.workerList(actor.id)) ?? []
            usage.workers += workers.count
            // A placed worker's room counts as a task's does (the quota's CPU and memory).
            for w in workers where w.propletId != nil {
                usage.cpuMillis += w.resources?.cpuMillis ?? 0
                usage.memoryBytes += w.resources?.memoryBytes ?? 0
            }
        }
        return usage
    }
}

extension TaskService {
    /// The task a handle names: its id, else its name in `namespace` (nil: any), else a prefix of
    /// its id there, as docker resolves containers. Nil when none; an error naming the
    /// candidates when the name or prefix fits several.
    public func resolveTask(_ handle: String, namespace: String?) throws -> TaskRecord? {
        if let t = try? task(handle) { return t }
        let found = try store.tasks(matching: handle, namespace: namespace, limit: 10).map { state.active[$0.id] ?? $0 }
        return try Self.pick(handle, found, kind: "task", name: \.spec.name, id: \.id)
    }

    /// The one of `candidates` named `handle`, else the one whose id it begins; refuses several.
    static func pick<T>(_ handle: String, _ candidates: [T], kind: String, name: KeyPath<T, String>, id: KeyPath<T, String>) throws -> T? {
        for match in [candidates.filter { $0[keyPath: name] == handle }, candidates.filter { $0[keyPath: id].hasPrefix(handle) }] {
            if match.count == 1 { return match[0] }
            if match.count > 1 {
                let ids = match.prefix(5).map { $0[keyPath: id] }.joined(separator: ", ")
                throw APIError.conflict("\(handle) is ambiguous: it names or begins \(match.count == 10 ? "10 or more" : "\(match.count)") \(kind)s (\(ids)); use an id")
            }
        }
        return nil
    }
}
