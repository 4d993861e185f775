import PropellerCore

/// Actors: registration, changes, deletion, state, messages and the commands on them. The
/// commands whose store write must succeed before anything changes (a new actor, a change, a
/// deletion, a state, a message) are written by the driver first and arrive here done; the
/// others are checked here and refused (throwing, changing nothing) when they cannot apply.
extension ClusterState {
    /// A new actor for `spec`, its defaults filled in (the driver stores it, then applies
    /// ``ClusterEvent/actorCreated(_:)``).
    public static func newActor(_ spec: ActorSpec, id: String, at now: Double, configuration: ManagerConfiguration) -> ActorRecord {
        ActorRecord(id: id, spec: withDefaults(spec, configuration), createdAt: now, updatedAt: now)
    }

    static func withDefaults(_ spec: ActorSpec, _ configuration: ManagerConfiguration) -> ActorSpec {
        var spec = spec
        if spec.resources.memoryBytes == 0 { spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if spec.resources.pids == 0 { spec.resources.pids = configuration.defaultPids }
        return spec
    }

    public func actor(_ id: String) throws -> ActorRecord {
        guard let a = actors.records[id] else { throw APIError.notFound("no actor \(id)") }
        return a
    }

    /// Actor `id` with `change` applied to its spec, checked; a change to what workers run bumps
    /// the revision (its workers are replaced once the driver has stored it and applied
    /// ``ClusterEvent/actorUpdated(_:)``).
    public func updatedActor(_ id: String, at now: Double, _ change: (inout ActorSpec) throws -> Void) throws -> ActorRecord {
        var a = try actor(id)
        var spec = a.spec
        try change(&spec)
        spec = Self.withDefaults(spec, configuration)
        if spec.stateless != a.spec.stateless {
            throw APIError.conflict("stateless: cannot change on a registered actor; register a new one")
        }
        let replace = spec.needsNewWorkers(comparedTo: a.spec)
        a.spec = spec
        a.updatedAt = now
        if replace {
            a.revision += 1
            a.status = .submitted
            a.message = nil
        }
        return a
    }

    /// Checks that actor `id` keeps a state.
    public func checkStateful(_ id: String) throws {
        let a = try actor(id)
        guard !a.spec.stateless else { throw APIError.conflict("actor \(id) is stateless: it has no state") }
    }

    // MARK: Recovery

    /// Workers keep their proplets (their reservations are made again there, or they are
    /// forgotten); executions that were running go back to the front of their queues.
    mutating func recoverActors(_ stored: [ActorRecord], states: [String: String], workers: [WorkerRecord], inbox: [ExecutionRecord]) {
        for a in stored {
            actors.records[a.id] = a
            actors.queues[a.id] = MessageQueue()
            if !a.spec.stateless { actors.states[a.id] = states[a.id] ?? "{}" }
        }
        for var w in workers {
            guard let a = actors.records[w.actorId], let p = w.propletId else {
                emit(.write(.deleteWorker(w.id)))
                continue
            }
            let resources = w.resources ?? a.spec.resources
            guard case .placed = reserveWorker(w.id, resources, constraints: [:], pinned: p) else {
                emit(.write(.deleteWorker(w.id)))
                continue
            }
            w.resources = resources
            w.state = w.state.idle  // what ran is in the inbox again
            actors.workers[w.id] = w
            actors.placedAt[w.id] = now.mono
        }
        for var e in inbox {
            guard actors.records[e.actorId] != nil else { continue }
            if e.status == .running {
                e.status = .submitted
                e.workerId = nil
                e.propletId = nil
                emit(.write(.saveExecution(e)))
            }
            actors.executions[e.id] = e
            actors.queues[e.actorId, default: MessageQueue()].append(e.id)
        }
        log(.info, "recovered actors", ["actors": "\(actors.records.count)", "workers": "\(actors.workers.count)", "queued": "\(actors.executions.count)"])
        for id in actors.records.keys.sorted() {
            scale(id)
            dispatch(id)
        }
    }

    // MARK: Commands

    mutating func actorCreated(_ a: ActorRecord) {
        actors.records[a.id] = a
        actors.queues[a.id] = MessageQueue()
        if !a.spec.stateless { actors.states[a.id] = "{}" }
        log(.info, "actor registered", ["actor": a.id, "name": a.spec.name, "image": a.spec.image])
        scale(a.id)
        emit(.reply(.actor(actors.records[a.id] ?? a)))
    }

    mutating func actorUpdated(_ a: ActorRecord) {
        let before = actors.records[a.id]
        actors.records[a.id] = a
        if let before, a.revision > before.revision {
            log(.info, "actor changed: replacing its workers", ["actor": a.id, "revision": "\(a.revision)"])
            for w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.actorId == a.id && w.revision < a.revision { retire(w.id) }
        }
        scale(a.id)
        dispatch(a.id)
        emit(.reply(.actor(actors.records[a.id] ?? a)))
    }

    /// An actor deleted from the store: its workers are retired (running executions killed), its
    /// queued and running executions end with the reason.
    mutating func actorDeleted(_ id: String) {
        for var w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.actorId == id {
            if let eid = w.executionId, let p = w.propletId {
                emit(.execution(ExecutionCommand(action: .kill, executionId: eid, attempt: actors.executions[eid]?.attempt ?? 1, workerId: w.id), to: p))
                w.state = w.state.idle  // it ends below
                actors.workers[w.id] = w
            }
            retire(w.id)
        }
        actors.records[id] = nil
        actors.queues[id] = nil
        actors.states[id] = nil
        for e in actors.executions.values.sorted(by: { $0.id < $1.id }) where e.actorId == id {
            actors.executions[e.id] = nil
            actors.dispatchedAt[e.id] = nil
            var gone = e
            gone.status = .error
            gone.error = "the actor was deleted"
            emit(.ended(gone))
        }
        log(.info, "actor deleted", ["actor": id])
    }

    mutating func messageQueued(_ e: ExecutionRecord) {
        actors.executions[e.id] = e
        actors.queues[e.actorId, default: MessageQueue()].append(e.id)
        dispatch(e.actorId)
        if actors.queued(e.actorId) > 0 { scale(e.actorId) }
        emit(.reply(.execution(actors.executions[e.id] ?? e)))
    }

    /// Drops every queued message (running ones go on); replies how many.
    mutating func purge(_ actorID: String) throws {
        _ = try actor(actorID)
        let ids = actors.queues[actorID]?.removeAll() ?? []
        for id in ids {
            guard var e = actors.executions[id] else { continue }
            e.status = .error
            e.error = "purged from the inbox"
            e.finishedAt = now.wall
            finish(e)
        }
        log(.info, "inbox purged", ["actor": actorID, "messages": "\(ids.count)"])
        emit(.reply(.count(ids.count)))
    }

    /// Force-quits an execution: a queued one is dropped, a running one killed. `stored`: the
    /// stored record when it is not active (for the refusal's reason).
    mutating func kill(_ actorID: String, _ executionID: String, stored: ExecutionRecord?) throws {
        _ = try actor(actorID)
        guard var e = actors.executions[executionID], e.actorId == actorID else {
            guard let stored, stored.actorId == actorID else { throw APIError.notFound("actor \(actorID) has no execution \(executionID)") }
            throw APIError.conflict("execution \(executionID) has ended (\(stored.status.rawValue))")
        }
        if e.status == .submitted {
            actors.queues[actorID]?.remove(e.id)
            e.status = .error
            e.error = "cancelled before it ran"
            e.finishedAt = now.wall
            finish(e)
            emit(.reply(.execution(e)))
            return
        }
        e.killRequested = true
        actors.executions[e.id] = e
        if let p = e.propletId, let w = e.workerId {
            emit(.execution(ExecutionCommand(action: .kill, executionId: e.id, attempt: e.attempt, workerId: w), to: p))
        }
        log(.info, "killing execution", ["execution": e.id, "actor": actorID])
        emit(.reply(.execution(e)))
    }

    /// Makes sure at least `count` workers exist (up to `max_workers`); replies the workers.
    mutating func ensureWorkers(_ actorID: String, count: Int) throws {
        let a = try actor(actorID)
        let limit = a.spec.stateless ? a.spec.maxWorkers : 1
        guard count <= limit else { throw APIError.unprocessable("num: at most max_workers (\(limit)) for actor \(actorID)") }
        guard a.status != .error else { throw APIError.conflict("actor \(actorID) is in error (\(a.message ?? "")): update its image first") }
        scale(actorID, atLeast: count)
        emit(.reply(.workers(try workerList(actorID))))
    }

    mutating func retireWorker(_ actorID: String, _ workerID: String) throws {
        _ = try actor(actorID)
        guard let w = actors.workers[workerID], w.actorId == actorID else { throw APIError.notFound("actor \(actorID) has no worker \(workerID)") }
        retire(w.id)
    }

    // MARK: Reads

    public func actorList() -> [ActorRecord] { actors.records.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) } }

    public func workerList(_ actorID: String) throws -> [WorkerRecord] {
        _ = try actor(actorID)
        return actors.workers.values.filter { $0.actorId == actorID }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }
}
