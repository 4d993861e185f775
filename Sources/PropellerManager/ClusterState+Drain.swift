import PropellerCore

/// An operator's control of where new work goes: eligibility and drains (Nomad's `node
/// eligibility` and `node drain`). A closed proplet keeps what runs there; a drain also moves
/// its actor workers at once and, at its deadline, stops the tasks still running there: one
/// whose restart policy allows another attempt runs again elsewhere, the others end `stopped`.
extension ClusterState {
    /// Whether nothing new may be placed on `p`: it is shutting down, drained or ineligible.
    static func closed(_ p: PropletRecord) -> Bool { p.draining == true || p.eligible == false || p.drain != nil }

    private func propletToChange(_ id: String) throws -> PropletRecord {
        guard let p = proplets[id] else { throw APIError.notFound("no proplet \(id)") }
        return p
    }

    /// Stores `p` and tells the scheduler whether it is closed; replies with it.
    private mutating func changed(_ p: PropletRecord) {
        proplets[p.id] = p
        ledger.setClosed(p.id, Self.closed(p))
        emit(.saveProplet(p))
        emit(.reply(.proplet(p)))
    }

    mutating func setEligibility(_ id: String, eligible: Bool) throws {
        var p = try propletToChange(id)
        if eligible && p.drain != nil {
            throw APIError.conflict("proplet \(id) is draining: end the drain to make it eligible (propeller proplet drain \(id) --cancel)")
        }
        p.eligible = eligible ? nil : false
        changed(p)
        log(.notice, eligible ? "proplet eligible: new work may go there" : "proplet ineligible: nothing new is placed there", ["proplet": id])
        if eligible { schedulePending() }
    }

    /// Begins (or changes the deadline of) a drain: the proplet is closed, its actor workers
    /// retire (a busy one after its execution) and their actors place new ones elsewhere.
    mutating func startDrain(_ id: String, deadlineSeconds: Double?) throws {
        var p = try propletToChange(id)
        if let seconds = deadlineSeconds, !(seconds >= 0 && seconds.isFinite) {
            throw APIError.unprocessable("deadline: a number of seconds, 0 or more")
        }
        let again = p.drain != nil
        p.drain = PropletDrain(startedAt: p.drain?.startedAt ?? now.wall, deadline: deadlineSeconds.map { now.wall + $0 })
        p.eligible = false
        changed(p)
        log(.notice, again ? "proplet drain changed" : "proplet draining: nothing new is placed there; its actor workers move",
            ["proplet": id, "deadline": deadlineSeconds.map { Duration.seconds($0).formattedSeconds } ?? "none"])
        var actorsToScale: Set<String> = []
        for w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.propletId == id && w.status != .shuttingDown {
            retire(w.id)
            actorsToScale.insert(w.actorId)
        }
        for actorID in actorsToScale.sorted() { scale(actorID) }
        checkDrain(id)
    }

    mutating func cancelDrain(_ id: String) throws {
        var p = try propletToChange(id)
        guard p.drain != nil else { throw APIError.conflict("proplet \(id) is not draining") }
        p.drain = nil
        p.eligible = nil
        changed(p)
        log(.notice, "proplet drain cancelled: new work may go there again", ["proplet": id])
        schedulePending()
    }

    /// Every tick: drains past their deadline stop what still runs; drains with nothing left
    /// end (the proplet stays ineligible).
    mutating func checkDrains() {
        for (id, p) in proplets.sorted(by: { $0.key < $1.key }) where p.drain != nil { checkDrain(id) }
    }

    private mutating func checkDrain(_ id: String) {
        guard var p = proplets[id], let drain = p.drain else { return }
        if let deadline = drain.deadline, now.wall >= deadline {
            let reason = "proplet \(id) was drained and its drain deadline passed"
            for taskID in ledger.tasks(on: id) {
                guard var t = active[taskID], !t.stopRequested else { continue }
                log(.notice, "drain deadline: stopping the task there", ["task": taskID, "proplet": id])
                let grace = 10.0
                emit(.stop(StopTask(taskId: taskID, attempt: t.attempt, signal: 15, graceSeconds: grace), to: id))
                let policy = t.spec.restartPolicy
                if policy.mode == .onFailure && t.attempt < policy.maxAttempts {
                    // Its next attempt goes elsewhere at once; the stopped one's report is old.
                    requeueOrFail(t, reason: reason)
                } else {
                    // Its last attempt: stopped there, and it ends `stopped` with the real exit
                    // status its proplet reports (sent again as SIGKILL after the grace).
                    t.stopRequested = true
                    t.updatedAt = now.wall
                    active[taskID] = t
                    dispatchedAt[taskID] = now.mono + .milliseconds(Int64(grace * 1000))
                    save([t], [TaskTransition(taskId: taskID, state: t.state, attempt: t.attempt, at: now.wall, reason: "stopping: " + reason)])
                }
            }
            for w in actors.workers.values.sorted(by: { $0.id < $1.id }) where w.propletId == id {
                if let eid = w.executionId, let e = actors.executions[eid], e.status == .running {
                    emit(.execution(ExecutionCommand(action: .kill, executionId: eid, attempt: e.attempt, workerId: w.id), to: id))
                }
                loseWorker(w.id, reason: reason)
            }
            schedulePending()
        }
        guard ledger.tasks(on: id).isEmpty, !actors.workers.values.contains(where: { $0.propletId == id }) else { return }
        p.drain = nil
        changed(p)
        log(.notice, "proplet drain complete: nothing of the cluster runs there; it stays ineligible", ["proplet": id])
    }
}
