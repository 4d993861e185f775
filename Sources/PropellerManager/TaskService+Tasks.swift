import Foundation
import PropellerCore

/// What the API does with tasks.
extension TaskService {
    /// Creates a task (state `created`), and queues it at once when `start` is set.
    public func create(_ spec: TaskSpec, start: Bool) throws -> TaskRecord {
        var spec = spec
        if spec.resources.memoryBytes == 0 { spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if spec.resources.pids == 0 { spec.resources.pids = configuration.defaultPids }
        let now = WallClock.now()
        var t = TaskRecord(id: UUID().uuidString.lowercased(), spec: spec, createdAt: now)
        var transitions = [TaskTransition(taskId: t.id, state: .created, attempt: 0, at: now, reason: nil)]
        if start {
            // Created and queued in one transaction; placement is the second.
            t.state = .pending
            t.attempt = 1
            transitions.append(TaskTransition(taskId: t.id, state: .pending, attempt: 1, at: now, reason: nil))
        }
        try store.insertTasks([t], transitions: transitions)
        logger.info("task created", metadata: ["task": "\(t.id)", "name": "\(spec.name)", "image": "\(spec.image)"])
        guard start else { return t }
        active[t.id] = t
        pendingQueue.append(t.id)
        schedulePending()
        if let current = active[t.id] { return current }
        return try stored( t.id) ?? t
    }

    /// Queues a created or finished task for (another) run.
    public func start(_ id: String) throws -> TaskRecord {
        if let t = active[id] { throw APIError.conflict("task \(id) is already \(t.state.rawValue)") }
        guard var t = try stored( id) else { throw APIError.notFound("no task \(id)") }
        let now = WallClock.now()
        t.attempt += 1
        t.state = .pending
        t.reason = nil
        t.phase = nil
        t.assignedProplet = nil
        t.stopRequested = false
        t.startedAt = nil
        t.finishedAt = nil
        t.result = nil
        t.updatedAt = now
        active[id] = t
        pendingQueue.append(id)
        persist([t], [TaskTransition(taskId: id, state: .pending, attempt: t.attempt, at: now, reason: nil)])
        schedulePending()
        if let current = active[id] { return current }
        return try stored( id) ?? t
    }

    /// Stops a task: a queued one at once, a placed one by asking its proplet (the state changes
    /// when the proplet reports the container gone).
    public func stop(_ id: String, signal: Int32 = 15, grace: Double = 10) throws -> TaskRecord {
        guard var t = active[id] else {
            guard let stored = try stored( id) else { throw APIError.notFound("no task \(id)") }
            if stored.state == .created {
                var s = stored
                let now = WallClock.now()
                s.state = .stopped
                s.updatedAt = now
                s.finishedAt = now
                s.reason = "stopped before it was started"
                persist([s], [TaskTransition(taskId: id, state: .stopped, attempt: s.attempt, at: now, reason: s.reason)])
                return s
            }
            throw APIError.conflict("task \(id) has already \(stored.state.rawValue)")
        }
        let now = WallClock.now()
        t.stopRequested = true
        t.updatedAt = now
        switch t.state {
        case .pending:
            t.state = .stopped
            t.reason = "stopped while pending"
            t.finishedAt = now
            active[id] = nil
            pendingQueue.removeAll { $0 == id }
            persist([t], [TaskTransition(taskId: id, state: .stopped, attempt: t.attempt, at: now, reason: t.reason)])
        case .scheduled, .running, .unknown:
            active[id] = t
            persist([t], [])
            if let p = t.assignedProplet {
                logger.info("stopping task", metadata: ["task": "\(id)", "proplet": "\(p)"])
                bus.send(StopTask(taskId: id, attempt: t.attempt, signal: signal, graceSeconds: grace), to: p)
            }
        default: break
        }
        return t
    }

    /// Removes a task that is not active, with its history and logs.
    public func delete(_ id: String) throws {
        if let t = active[id] { throw APIError.conflict("task \(id) is \(t.state.rawValue): stop it first") }
        guard try stored( id) != nil else { throw APIError.notFound("no task \(id)") }
        try store.deleteTask(id: id)
        logger.info("task deleted", metadata: ["task": "\(id)"])
    }

    /// Replaces a task's spec while it is not active.
    public func update(_ id: String, _ change: (inout TaskSpec) throws -> Void) throws -> TaskRecord {
        if let t = active[id] { throw APIError.conflict("task \(id) is \(t.state.rawValue): it can be changed only when created or finished") }
        guard var t = try stored( id) else { throw APIError.notFound("no task \(id)") }
        try change(&t.spec)
        if t.spec.resources.memoryBytes == 0 { t.spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if t.spec.resources.pids == 0 { t.spec.resources.pids = configuration.defaultPids }
        t.updatedAt = WallClock.now()
        try store.updateSpec(t)
        return t
    }

    /// The task as it is now: from memory when active, else from the store.
    public func task(_ id: String) throws -> TaskRecord {
        if let t = active[id] { return t }
        guard let t = try stored( id) else { throw APIError.notFound("no task \(id)") }
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
        if !active.keys.contains(t.id) {
            follower.finish()
        } else {
            let key = UUID()
            followers[id, default: [:]][key] = follower
            follower.continuation.onTermination = { [weak self] _ in Task { await self?.forgetListener(of: id, key) } }
        }
        return stream
    }

    /// Pending tasks (the queue length of /metrics).
    public var queueLength: Int { pendingQueue.count }

    /// Proplets with their reservations filled in.
    public func propletList() -> [PropletRecord] {
        ledger.nodes.compactMap { node in
            guard var p = proplets[node.id] else { return nil }
            p.allocated = node.allocated
            p.taskCount = Int(node.taskCount)
            return p
        }
    }

    public func proplet(_ id: String) throws -> PropletRecord {
        guard let node = ledger.node(id), var p = proplets[id] else { throw APIError.notFound("no proplet \(id)") }
        p.allocated = node.allocated
        p.taskCount = Int(node.taskCount)
        return p
    }

    /// Forgets a proplet that is dead (an alive one would announce itself again at once).
    public func deleteProplet(_ id: String) throws {
        guard proplets[id] != nil else { throw APIError.notFound("no proplet \(id)") }
        if connections[id]?.isLost == false {
            throw APIError.conflict("proplet \(id) is \(connections[id]?.name ?? "alive"): stop it first, or wait until it is lost (a running proplet registers again)")
        }
        try store.deleteProplet(id: id)
        proplets[id] = nil
        connections[id] = nil
        ledger.remove(id)
        logger.info("proplet deleted", metadata: ["proplet": "\(id)"])
    }
}

extension TaskService {
    public func listTasks(offset: Int, limit: Int, state: TaskState?) throws -> (Int, [TaskRecord]) {
        let (total, stored) = try store.tasks(offset: offset, limit: limit, state: state)
        // Active tasks: the in-memory copy is the freshest.
        return (total, stored.map { active[$0.id] ?? unsaved[$0.id] ?? $0 })
    }

    public func history(_ id: String) throws -> [TaskTransition] {
        try store.history(taskID: id) + unsavedTransitions.filter { $0.taskId == id }
    }

    public func logs(_ id: String) throws -> TaskLogs {
        _ = try task(id)
        return try store.logs(taskID: id)
    }

    public func taskCountsForMetrics() throws -> [TaskState: Int] { try store.taskCounts() }
}
