import PropellerCore

/// Actor workers: the autoscaler, placement in the allocation table, the proplets' reports and
/// the health checks that replace lost workers. A worker's room is reserved in the same table as
/// the tasks' (`.worker(id)`), so a warm worker's memory and CPU are as real to the scheduler as
/// a running task's.
extension ClusterState {
    /// Reserves room for worker `id` on the proplet the policy picks (or on `pinned`, when a
    /// restarted manager re-adopts a worker that already exists there).
    mutating func reserveWorker(_ id: String, _ resources: Resources, constraints: [String: String], pinned: String?,
                                volumes: [VolumeMount] = [], network: String? = nil, namespace: String = Namespaces.defaultName) -> WorkerPlacement {
        if let held = ledger.allocation(of: .worker(id)) { return .placed(propletID: held.proplet) }
        var request = PlacementRequest(resources: resources, constraints: constraints, pinnedProplet: pinned, volumes: volumes, network: network ?? "none")
        request.namespace = namespace
        switch scheduler.place(request, on: ledger.nodes) {
        case .place(let i):
            let node = ledger.nodes[i].id
            ledger.reserve(.worker(id), resources, on: node)
            return .placed(propletID: node)
        case .wait(let reason): return .wait(reason: reason)
        case .never(let reason): return .never(reason: reason)
        }
    }

    /// Adds workers while messages wait and the actor has room for more: as many as busy plus
    /// queued, between `min_workers` and `max_workers` (one for a stateful actor).
    mutating func scale(_ actorID: String, atLeast requested: Int = 0) {
        guard let a = actors.records[actorID], a.status != .error else { return }
        let live = actors.liveWorkers(of: actorID)
        let busy = live.filter { $0.status == .busy }.count
        let limit = a.spec.stateless ? a.spec.maxWorkers : 1
        let wanted = min(limit, max(a.spec.minWorkers, requested, busy + actors.queued(actorID)))
        // One worker waiting for room is enough: more would wait for the same room (the next
        // pass adds the rest as room appears).
        guard live.count < wanted, !live.contains(where: { $0.propletId == nil }) else { return }
        for _ in live.count..<wanted {
            let w = WorkerRecord(id: actors.workerIDs.next(), actorId: a.id, revision: a.revision, createdAt: now.wall)
            actors.workers[w.id] = w
            place(w.id)
            guard actors.workers[w.id]?.propletId != nil else { return }
        }
    }

    /// Reserves room for a worker that has none and asks its proplet to prepare it.
    mutating func place(_ workerID: String) {
        guard var w = actors.workers[workerID], w.propletId == nil, let a = actors.records[w.actorId] else { return }
        let placement: WorkerPlacement = if let reason = quotaWait(worker: a) { .wait(reason: reason) } else {
            reserveWorker(w.id, a.spec.resources, constraints: a.spec.constraints, pinned: nil, volumes: a.spec.volumes ?? [], network: a.spec.network,
                          namespace: a.spec.namespace.orDefaultNamespace)
        }
        switch placement {
        case .placed(let proplet):
            w.state = .requested(on: proplet)
            w.resources = a.spec.resources
            actors.workers[w.id] = w
            actors.placedAt[w.id] = now.mono
            emit(.write(.saveWorker(w)))
            log(.info, "worker placed", ["worker": w.id, "actor": a.id, "proplet": proplet])
            emit(.worker(WorkerCommand(action: .prepare, workerId: w.id, actorId: a.id, revision: a.revision, image: a.spec.image, command: a.spec.command,
                                       env: a.spec.defaultEnv, resources: a.spec.resources, timeoutSeconds: a.spec.timeoutSeconds,
                                       epoch: proplets[proplet]?.epoch ?? 0, volumes: a.spec.volumes, tmpfs: a.spec.tmpfs, secrets: a.spec.secrets,
                                       network: a.spec.network),
                             to: proplet))
        case .wait(let reason), .never(let reason):
            if w.reason != reason {
                log(.notice, "worker waits for room", ["worker": w.id, "actor": a.id, "reason": reason])
            }
            w.state = .waiting(reason: reason)
            actors.workers[w.id] = w
            if var actor = actors.records[a.id], actor.status == .submitted, actor.message != reason {
                actor.message = "no worker yet: \(reason)"
                actors.records[a.id] = actor
            }
        }
    }

    /// Retires a worker: at once when it holds no room, through its proplet otherwise (a busy one
    /// finishes its execution first).
    mutating func retire(_ workerID: String) {
        guard var w = actors.workers[workerID], w.status != .shuttingDown else { return }
        guard let p = w.propletId else {
            actors.workers[workerID] = nil
            emit(.write(.deleteWorker(workerID)))
            return
        }
        w.state = .shuttingDown(on: p, execution: w.executionId)
        actors.workers[workerID] = w
        emit(.write(.saveWorker(w)))
        log(.info, "retiring worker", ["worker": workerID, "actor": w.actorId, "proplet": p])
        emit(.worker(WorkerCommand(action: .retire, workerId: workerID, actorId: w.actorId), to: p))
    }

    /// Forgets a worker and gives its room back (what waited for the room is placed). An
    /// execution it still ran (a retiring worker finishes one first) runs again elsewhere, once,
    /// or fails with `reason`.
    mutating func removeWorker(_ workerID: String, reason: String) {
        guard let w = actors.workers.removeValue(forKey: workerID) else { return }
        actors.misses[workerID] = nil
        actors.placedAt[workerID] = nil
        emit(.write(.deleteWorker(workerID)))
        if let p = w.propletId, ledger.allocation(of: .worker(workerID))?.proplet == p, ledger.release(.worker(workerID)) != nil {
            schedulePending()
        }
        if let eid = w.executionId, let e = actors.executions[eid], e.status == .running, e.workerId == workerID {
            rerunOrFail(e, reason: reason)
        }
    }

    /// A worker is gone with its proplet (or the proplet forgot it): its execution runs again
    /// elsewhere (once), and the autoscaler replaces it.
    mutating func loseWorker(_ workerID: String, reason: String) {
        guard let w = actors.workers[workerID] else { return }
        log(.warning, "worker lost", ["worker": workerID, "actor": w.actorId, "proplet": w.propletId ?? "-", "reason": reason])
        removeWorker(workerID, reason: "worker \(workerID) lost: \(reason)")
        if actors.records[w.actorId] != nil {
            scale(w.actorId)
            dispatch(w.actorId)
        }
    }

    /// Loses the workers placed on proplet `id` (it was given up).
    mutating func loseWorkers(on id: String, reason: String) {
        for w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.propletId == id {
            loseWorker(w.id, reason: reason)
        }
    }

    // MARK: Reports

    mutating func workerReport(_ r: WorkerReport) {
        guard var w = actors.workers[r.workerId] else {
            if r.status == .ready || r.status == .pulling {
                // A worker this manager does not know (deleted with its actor): retire it.
                emit(.worker(WorkerCommand(action: .retire, workerId: r.workerId, actorId: ""), to: r.propletId))
            }
            return
        }
        guard w.propletId == r.propletId else {
            log(.error, "worker report from a proplet the worker is not on", ["worker": r.workerId, "from": r.propletId])
            return
        }
        switch r.status {
        case .pulling:
            if case .requested(let p) = w.state { w.state = .pulling(on: p) }
            actors.workers[w.id] = w
        case .ready:
            guard w.status == .requested || w.status == .pulling else { return }
            w.state = .ready(on: r.propletId)
            w.lastUsedAt = now.wall
            actors.workers[w.id] = w
            emit(.write(.saveWorker(w)))
            if var a = actors.records[w.actorId], a.revision == w.revision, a.status != .ready {
                a.status = .ready
                a.message = nil
                a.updatedAt = now.wall
                actors.records[a.id] = a
                emit(.write(.saveActor(a)))
            }
            log(.info, "worker ready", ["worker": w.id, "actor": w.actorId, "proplet": r.propletId])
            dispatch(w.actorId)
        case .error:
            removeWorker(w.id, reason: "worker \(w.id) failed: \(r.error ?? "no reason given")")
            if var a = actors.records[w.actorId], a.revision == w.revision {
                a.status = .error
                a.message = r.error ?? "the worker failed"
                a.updatedAt = now.wall
                actors.records[a.id] = a
                emit(.write(.saveActor(a)))
                log(.warning, "actor in error", ["actor": a.id, "error": a.message ?? ""])
                for other in actors.liveWorkers(of: a.id).sorted(by: { $0.id < $1.id }) where other.status == .requested || other.status == .pulling {
                    retire(other.id)
                }
            }
        case .stopped:
            // An execution it still ran ended without its report (or was cut off).
            removeWorker(w.id, reason: "worker \(w.id) stopped on proplet \(r.propletId)")
            if actors.records[w.actorId] != nil { scale(w.actorId) }
        }
    }

    /// Reconciles the workers a proplet lists with those placed on it: one it stopped listing
    /// (it restarted, or lost it) is lost, and replaced; a retiring one it no longer has is gone;
    /// a busy one it shows idle lost its execution's report; one it lists that the manager does
    /// not know is retired.
    mutating func reconcileWorkers(_ hb: PropletHeartbeat) {
        guard let beats = hb.workers else { return }
        let listed = Dictionary(beats.map { ($0.workerId, $0) }, uniquingKeysWith: { a, _ in a })
        let grace = configuration.livenessInterval * 2
        for w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.propletId == hb.propletId {
            let settled = actors.placedAt[w.id].map { now.mono - $0 > grace } ?? true
            guard let beat = listed[w.id] else {
                let n = (actors.misses[w.id] ?? 0) + 1
                actors.misses[w.id] = n
                guard n >= 2 && settled else { continue }
                if w.status == .shuttingDown {
                    removeWorker(w.id, reason: "proplet \(hb.propletId) no longer has worker \(w.id)")  // its "stopped" report was lost
                } else {
                    loseWorker(w.id, reason: "proplet \(hb.propletId) no longer has it")
                }
                continue
            }
            if w.status == .busy, let eid = w.executionId, let e = actors.executions[eid], beat.running != "\(eid)/\(e.attempt)",
               actors.dispatchedAt[eid].map({ now.mono - $0 > grace }) ?? true {
                // Idle there, busy here: the execution's report was lost on the way.
                let n = (actors.misses[w.id] ?? 0) + 1
                actors.misses[w.id] = n
                if n >= 2 {
                    actors.misses[w.id] = 0
                    var idle = w
                    idle.state = idle.state.idle
                    actors.workers[w.id] = idle
                    rerunOrFail(e, reason: "its report from worker \(w.id) was lost")
                    dispatch(w.actorId)
                }
                continue
            }
            actors.misses[w.id] = 0
        }
        // One this manager does not know (it gave the proplet up meanwhile, or deleted the
        // actor): retired, so that it holds no room the scheduler cannot see.
        for w in beats where actors.workers[w.workerId] == nil {
            log(.notice, "retiring a worker the manager does not know", ["worker": w.workerId, "proplet": hb.propletId])
            emit(.worker(WorkerCommand(action: .retire, workerId: w.workerId, actorId: ""), to: hb.propletId))
        }
    }

    /// The autoscaler's pass: workers on proplets given up are lost, waiting ones placed, idle
    /// ones past their TTL retired, queues scaled for.
    mutating func autoscale() {
        for w in actors.workers.values.sorted(by: { $0.id < $1.id }) {
            guard let p = w.propletId, !holdsWork(p) else { continue }
            loseWorker(w.id, reason: "proplet \(p) is lost")
        }
        for w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.propletId == nil { place(w.id) }
        let ttl = Double(configuration.actors.workerIdleTTL.components.seconds)
        for id in actors.records.keys.sorted() {
            guard let a = actors.records[id] else { continue }
            var live = actors.liveWorkers(of: id)
            for w in live.sorted(by: { ($0.lastUsedAt, $0.id) < ($1.lastUsedAt, $1.id) })
            where w.status == .ready && now.wall - w.lastUsedAt > ttl && live.count > a.spec.minWorkers {
                retire(w.id)
                live.removeAll { $0.id == w.id }
            }
            scale(id)
            dispatch(id)
        }
    }
}
