import Foundation
import PropellerCore

/// Workers: the autoscaler, placement through the task scheduler's ledger, the proplets'
/// reports and the health checks that replace lost workers.
extension ActorService {
    /// Workers of the actor's current revision that are not on their way out.
    func liveWorkers(of actorID: String) -> [WorkerRecord] {
        guard let a = actors[actorID] else { return [] }
        return workers.values.filter { $0.actorId == actorID && $0.revision == a.revision && $0.status != .shuttingDown }
    }

    /// Adds workers while messages wait and the actor has room for more: as many as busy plus
    /// queued, between `min_workers` and `max_workers` (one for a stateful actor).
    func scale(_ actorID: String, atLeast requested: Int = 0) async {
        guard let a = actors[actorID], a.status != .error else { return }
        let live = liveWorkers(of: actorID)
        let busy = live.filter { $0.status == .busy }.count
        let limit = a.spec.stateless ? a.spec.maxWorkers : 1
        let wanted = min(limit, max(a.spec.minWorkers, requested, busy + (queues[actorID]?.count ?? 0)))
        // One worker waiting for room is enough: more would wait for the same room (the next
        // pass adds the rest as room appears).
        guard live.count < wanted, !live.contains(where: { $0.propletId == nil }) else { return }
        for _ in live.count..<wanted {
            guard await startWorker(for: a) else { return }
        }
    }

    /// Adds a worker; false when it waits for room.
    func startWorker(for a: ActorRecord) async -> Bool {
        let w = WorkerRecord(id: "w-" + Self.newID().prefix(13), actorId: a.id, revision: a.revision, createdAt: WallClock.now())
        workers[w.id] = w
        await place(w.id)
        return workers[w.id]?.propletId != nil
    }

    /// Reserves room for a worker that has none and asks its proplet to prepare it.
    func place(_ workerID: String) async {
        guard var w = workers[workerID], w.propletId == nil, let a = actors[w.actorId] else { return }
        switch await tasks.reserveWorker(w.id, resources: a.spec.resources, constraints: a.spec.constraints) {
        case .placed(let proplet):
            // The actor or worker may have changed while the ledger was asked.
            guard workers[workerID] != nil, actors[a.id] != nil else {
                await tasks.releaseWorker(workerID, on: proplet)
                return
            }
            w.propletId = proplet
            w.resources = a.spec.resources
            w.reason = nil
            workers[w.id] = w
            placedAt[w.id] = .now
            save(w)
            logger.info("worker placed", metadata: ["worker": "\(w.id)", "actor": "\(a.id)", "proplet": "\(proplet)"])
            bus.send(WorkerCommand(action: .prepare, workerId: w.id, actorId: a.id, revision: a.revision, image: a.spec.image, command: a.spec.command,
                                   env: a.spec.defaultEnv, resources: a.spec.resources, timeoutSeconds: a.spec.timeoutSeconds), to: proplet)
        case .wait(let reason), .never(let reason):
            if w.reason != reason {
                logger.notice("worker waits for room", metadata: ["worker": "\(w.id)", "actor": "\(a.id)", "reason": "\(reason)"])
            }
            w.reason = reason
            workers[w.id] = w
            if var actor = actors[a.id], actor.status == .submitted, actor.message != reason {
                actor.message = "no worker yet: \(reason)"
                actors[a.id] = actor
            }
        }
    }

    /// Retires a worker: at once when it holds no room, through its proplet otherwise (a busy one
    /// finishes its execution first).
    func retire(_ workerID: String) {
        guard var w = workers[workerID], w.status != .shuttingDown else { return }
        guard let p = w.propletId else {
            workers[workerID] = nil
            try? store.deleteWorker(id: workerID)
            return
        }
        w.status = .shuttingDown
        workers[workerID] = w
        save(w)
        logger.info("retiring worker", metadata: ["worker": "\(workerID)", "actor": "\(w.actorId)", "proplet": "\(p)"])
        bus.send(WorkerCommand(action: .retire, workerId: workerID, actorId: w.actorId), to: p)
    }

    /// Forgets a worker and gives its room back.
    func remove(_ workerID: String) async {
        guard let w = workers.removeValue(forKey: workerID) else { return }
        misses[workerID] = nil
        placedAt[workerID] = nil
        try? store.deleteWorker(id: workerID)
        if let p = w.propletId { await tasks.releaseWorker(workerID, on: p) }
    }

    /// A worker is gone with its proplet (or the proplet forgot it): its execution runs again
    /// elsewhere (once), and the autoscaler replaces it.
    func lose(_ workerID: String, reason: String) async {
        guard let w = workers[workerID] else { return }
        logger.warning("worker lost", metadata: ["worker": "\(workerID)", "actor": "\(w.actorId)", "proplet": "\(w.propletId ?? "-")", "reason": "\(reason)"])
        await remove(workerID)
        if let eid = w.executionId, let e = active[eid], e.workerId == workerID {
            rerunOrFail(e, reason: "worker \(workerID) lost: \(reason)")
        }
        if actors[w.actorId] != nil {
            await scale(w.actorId)
            dispatch(w.actorId)
        }
    }

    func save(_ w: WorkerRecord) {
        do { try store.saveWorker(w) } catch { logger.error("store write failed", metadata: ["error": "\(error)"]) }
    }

    // MARK: Reports

    public func handleWorkerReport(_ r: WorkerReport) async {
        guard var w = workers[r.workerId] else {
            if r.status == .ready || r.status == .pulling {
                // A worker this manager does not know (deleted with its actor): retire it.
                bus.send(WorkerCommand(action: .retire, workerId: r.workerId, actorId: ""), to: r.propletId)
            }
            return
        }
        guard w.propletId == r.propletId else {
            logger.error("worker report from a proplet the worker is not on", metadata: ["worker": "\(r.workerId)", "from": "\(r.propletId)"])
            return
        }
        switch r.status {
        case .pulling:
            if w.status == .requested { w.status = .pulling }
            workers[w.id] = w
        case .ready:
            guard w.status == .requested || w.status == .pulling else { return }
            w.status = .ready
            w.lastUsedAt = WallClock.now()
            workers[w.id] = w
            save(w)
            if var a = actors[w.actorId], a.revision == w.revision, a.status != .ready {
                a.status = .ready
                a.message = nil
                a.updatedAt = WallClock.now()
                actors[a.id] = a
                try? store.saveActor(a)
            }
            logger.info("worker ready", metadata: ["worker": "\(w.id)", "actor": "\(w.actorId)", "proplet": "\(r.propletId)"])
            dispatch(w.actorId)
        case .error:
            await remove(w.id)
            if var a = actors[w.actorId], a.revision == w.revision {
                a.status = .error
                a.message = r.error ?? "the worker failed"
                a.updatedAt = WallClock.now()
                actors[a.id] = a
                try? store.saveActor(a)
                logger.warning("actor in error", metadata: ["actor": "\(a.id)", "error": "\(a.message ?? "")"])
                for other in liveWorkers(of: a.id) where other.status == .requested || other.status == .pulling { retire(other.id) }
            }
        case .stopped:
            if w.status != .shuttingDown, let eid = w.executionId, let e = active[eid] {
                rerunOrFail(e, reason: "worker \(w.id) stopped on proplet \(r.propletId)")
            }
            await remove(w.id)
            if actors[w.actorId] != nil { await scale(w.actorId) }
        }
    }

    /// Reconciles the workers a proplet lists with those placed on it: one it stopped listing
    /// (it restarted, or lost it) is lost, and replaced; a retiring one it no longer has is gone.
    public func handleHeartbeat(_ hb: PropletHeartbeat) async {
        // Offline (a Last Will or a goodbye): the task service decides when the proplet is lost
        // (after the disconnect grace); its workers are lost then, by `tick`.
        if hb.status == .offline { return }
        guard let beats = hb.workers else { return }
        let listed = Dictionary(beats.map { ($0.workerId, $0) }, uniquingKeysWith: { a, _ in a })
        let grace = configuration.livenessInterval * 2
        for w in workers.values where w.propletId == hb.propletId {
            let settled = placedAt[w.id].map { ContinuousClock.now - $0 > grace } ?? true
            guard let beat = listed[w.id] else {
                let n = (misses[w.id] ?? 0) + 1
                misses[w.id] = n
                guard n >= 2 && settled else { continue }
                if w.status == .shuttingDown {
                    await remove(w.id)  // its "stopped" report was lost
                } else {
                    await lose(w.id, reason: "proplet \(hb.propletId) no longer has it")
                }
                continue
            }
            if w.status == .busy, let eid = w.executionId, let e = active[eid], beat.running != "\(eid)/\(e.attempt)",
               dispatchedAt[eid].map({ ContinuousClock.now - $0 > grace }) ?? true {
                // Idle there, busy here: the execution's report was lost on the way.
                let n = (misses[w.id] ?? 0) + 1
                misses[w.id] = n
                if n >= 2 {
                    misses[w.id] = 0
                    var idle = w
                    idle.status = .ready
                    idle.executionId = nil
                    workers[w.id] = idle
                    rerunOrFail(e, reason: "its report from worker \(w.id) was lost")
                    dispatch(w.actorId)
                }
                continue
            }
            misses[w.id] = 0
        }
    }

    /// The periodic pass: workers on dead proplets are lost, waiting ones placed, idle ones past
    /// their TTL retired, queues scaled for.
    public func tick() async {
        flushUnsaved()
        for w in workers.values {
            guard let p = w.propletId else { continue }
            if !(await tasks.holdsWork(p)) { await lose(w.id, reason: "proplet \(p) is lost") }
        }
        for w in workers.values where w.propletId == nil { await place(w.id) }
        let now = WallClock.now()
        let ttl = Double(configuration.workerIdleTTL.components.seconds)
        for (id, a) in actors {
            var live = liveWorkers(of: id)
            for w in live.sorted(by: { $0.lastUsedAt < $1.lastUsedAt }) where w.status == .ready && now - w.lastUsedAt > ttl && live.count > a.spec.minWorkers {
                retire(w.id)
                live.removeAll { $0.id == w.id }
            }
            await scale(id)
            dispatch(id)
        }
    }

    // MARK: API

    public func workerList(_ actorID: String) throws -> [WorkerRecord] {
        _ = try actor(actorID)
        return workers.values.filter { $0.actorId == actorID }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Makes sure at least `count` workers exist (up to `max_workers`).
    public func ensureWorkers(_ actorID: String, count: Int) async throws -> [WorkerRecord] {
        let a = try actor(actorID)
        let limit = a.spec.stateless ? a.spec.maxWorkers : 1
        guard count <= limit else { throw APIError.unprocessable("num: at most max_workers (\(limit)) for actor \(actorID)") }
        guard a.status != .error else { throw APIError.conflict("actor \(actorID) is in error (\(a.message ?? "")): update its image first") }
        await scale(actorID, atLeast: count)
        return try workerList(actorID)
    }

    public func retireWorker(_ actorID: String, workerID: String) throws {
        _ = try actor(actorID)
        guard let w = workers[workerID], w.actorId == actorID else { throw APIError.notFound("actor \(actorID) has no worker \(workerID)") }
        retire(w.id)
    }
}
