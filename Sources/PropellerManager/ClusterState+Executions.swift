import Foundation
import PropellerCore

/// Executions: dispatch of queued messages to idle workers, outcomes, re-runs. A running
/// execution lives in memory only (the API reads it from there): a restarted manager runs every
/// message still in the inbox again anyway.
extension ClusterState {
    /// Hands queued messages, oldest first, to the actor's idle workers of its current revision.
    /// The driver reads each body from the inbox as it sends the run (one it cannot read comes
    /// back as ``ClusterEvent/messageUnreadable(_:missing:)``).
    mutating func dispatch(_ actorID: String) {
        guard let a = actors.records[actorID], var queue = actors.queues[actorID], !queue.isEmpty else { return }
        var idle = actors.workers.values.filter { $0.actorId == actorID && $0.revision == a.revision && $0.status == .ready && $0.propletId != nil }
        guard !idle.isEmpty else { return }
        // The most recently used first: keeps the others idle long enough to be retired.
        idle.sort { ($0.lastUsedAt, $0.id) > ($1.lastUsedAt, $1.id) }
        defer { actors.queues[actorID] = queue }
        for var w in idle {
            guard let eid = queue.popFirst() else { return }
            guard var e = actors.executions[eid], let proplet = w.propletId else { continue }
            e.status = .running
            e.workerId = w.id
            e.propletId = proplet
            actors.executions[eid] = e
            w.state = .busy(on: proplet, execution: eid)
            actors.workers[w.id] = w
            actors.dispatchedAt[eid] = now.mono
            emit(.execution(ExecutionCommand(action: .run, executionId: eid, attempt: e.attempt, workerId: w.id, contentType: e.contentType, env: e.env,
                                             state: a.spec.stateless ? nil : (actors.states[actorID] ?? "{}"),
                                             resultLimit: configuration.actors.resultLimit, epoch: proplets[proplet]?.epoch ?? 0), to: proplet))
        }
    }

    /// A run whose message the driver could not read: `missing` (the inbox no longer has it) ends
    /// it; otherwise (the store failed) it goes back to the front of its queue for the next pass.
    mutating func messageUnreadable(_ executionID: String, missing: Bool) {
        guard var e = actors.executions[executionID], e.status == .running else { return }
        actors.dispatchedAt[e.id] = nil
        if let wid = e.workerId, var w = actors.workers[wid], w.executionId == e.id {
            w.state = w.state.idle
            actors.workers[wid] = w
        }
        if missing {
            actors.executions[e.id] = nil
            log(.error, "a queued message is no longer in the inbox: dropped", ["execution": e.id, "actor": e.actorId])
            dispatch(e.actorId)
            return
        }
        e.status = .submitted
        e.workerId = nil
        e.propletId = nil
        actors.executions[e.id] = e
        actors.queues[e.actorId, default: MessageQueue()].prepend(e.id)
    }

    mutating func executionReport(_ r: ExecutionReport) {
        guard var e = actors.executions[r.executionId], e.attempt == r.attempt, e.status == .running, e.workerId == r.workerId, e.propletId == r.propletId else {
            log(.debug, "execution report not expected: ignored", ["execution": r.executionId, "attempt": "\(r.attempt)", "from": r.propletId])
            return
        }
        actors.dispatchedAt[e.id] = nil
        if r.workerMissing && e.killRequested != true {
            // The proplet does not have the worker (it restarted): lose it, run the message again.
            loseWorker(r.workerId, reason: r.outcome.error ?? "not on its proplet")
            return
        }
        let o = r.outcome
        e.exitCode = o.exitCode
        e.startedAt = o.startedAt
        e.finishedAt = o.finishedAt ?? now.wall
        if let s = o.startedAt, let f = o.finishedAt { e.runtime = max(0, f - s) }
        e.cpuUsec = o.usage.cpuUsec
        e.memoryPeakBytes = o.usage.memoryPeakBytes
        e.resultsBytes = r.results.count
        e.resultsTruncated = r.resultsTruncated
        if e.killRequested == true {
            e.status = .error
            e.error = "killed on request"
        } else if o.state == .completed {
            e.status = .complete
            e.error = r.stateError
        } else {
            e.status = .error
            e.error = o.error ?? Self.describeFailure(o)
        }
        if let state = r.state, actors.records[e.actorId]?.spec.stateless == false, e.status == .complete {
            actors.states[e.actorId] = state
            emit(.write(.setActorState(actor: e.actorId, state: state)))
        }
        finish(e, logs: TaskLogs(stdout: o.stdoutTail, stderr: o.stderrTail), results: r.results)
        if var w = actors.workers[r.workerId], w.executionId == e.id {
            w.state = w.state.idle
            w.lastUsedAt = now.wall
            w.executions += 1
            actors.workers[w.id] = w
            if let a = actors.records[w.actorId], w.revision < a.revision { retire(w.id) }
        }
        dispatch(e.actorId)
    }

    /// Stores a final execution, takes it out of the inbox and wakes its waiters.
    mutating func finish(_ e: ExecutionRecord, logs: TaskLogs = TaskLogs(), results: Data = Data()) {
        actors.executions[e.id] = nil
        actors.dispatchedAt[e.id] = nil
        emit(.write(.finishExecution(e, logs, results)))
        log(.info, "execution ended", ["execution": e.id, "actor": e.actorId, "status": e.status.rawValue, "exit_code": e.exitCode.map(String.init) ?? "-"])
        emit(.ended(e))
    }

    /// At least once: a message whose worker was lost runs once more (at the front of its
    /// queue), then its execution fails with the reason.
    mutating func rerunOrFail(_ execution: ExecutionRecord, reason: String) {
        var e = execution
        actors.dispatchedAt[e.id] = nil
        if e.attempt < 2 && e.killRequested != true && actors.records[e.actorId] != nil {
            e.attempt += 1
            e.status = .submitted
            e.workerId = nil
            e.propletId = nil
            actors.executions[e.id] = e
            actors.queues[e.actorId, default: MessageQueue()].prepend(e.id)
            emit(.write(.saveExecution(e)))
            log(.notice, "execution runs again", ["execution": e.id, "attempt": "\(e.attempt)", "reason": reason])
        } else {
            e.status = .error
            e.error = e.killRequested == true ? "killed on request" : "\(reason) (after a re-run)"
            e.finishedAt = now.wall
            finish(e)
        }
    }
}
