import Foundation
import PropellerCore

/// Messages and executions: the durable inbox, dispatch to idle workers, outcomes, re-runs and
/// synchronous waits.
extension ActorService {
    /// Queues a message; returns its execution (status `submitted`).
    public func send(_ actorID: String, body: Data, contentType: String, env: [String: String]) async throws -> ExecutionRecord {
        _ = try actor(actorID)
        let e = ExecutionRecord(id: Self.newID(), actorId: actorID, contentType: contentType, messageBytes: body.count, env: env, submittedAt: WallClock.now())
        try store.enqueue(e, message: InboxMessage(executionID: e.id, actorID: actorID, body: body, contentType: contentType))
        active[e.id] = e
        queues[actorID, default: MessageQueue()].append(e.id)
        dispatch(actorID)
        if !(queues[actorID]?.isEmpty ?? true) { await scale(actorID) }
        return active[e.id] ?? e
    }

    /// Hands queued messages, oldest first, to the actor's idle workers of its current revision.
    func dispatch(_ actorID: String) {
        guard let a = actors[actorID], var queue = queues[actorID], !queue.isEmpty else { return }
        var idle = workers.values.filter { $0.actorId == actorID && $0.revision == a.revision && $0.status == .ready && $0.propletId != nil }
        guard !idle.isEmpty else { return }
        // The most recently used first: keeps the others idle long enough to be retired.
        idle.sort { $0.lastUsedAt > $1.lastUsedAt }
        defer { queues[actorID] = queue }
        for var w in idle {
            guard let eid = queue.popFirst() else { return }
            guard var e = active[eid], let proplet = w.propletId else { continue }
            let message: InboxMessage
            do {
                guard let m = try store.message(executionID: eid) else {
                    active[eid] = nil
                    continue
                }
                message = m
            } catch {
                logger.error("cannot read a message from the inbox", metadata: ["execution": "\(eid)", "error": "\(error)"])
                queue.prepend(eid)
                return
            }
            e.status = .running
            e.workerId = w.id
            e.propletId = proplet
            active[eid] = e
            w.status = .busy
            w.executionId = eid
            workers[w.id] = w
            // Not written to the store: `running` lives in memory (the API reads it from there),
            // and a restarted manager runs every message still in the inbox again anyway.
            dispatchedAt[eid] = .now
            bus.send(ExecutionCommand(action: .run, executionId: eid, attempt: e.attempt, workerId: w.id, message: message.body, contentType: message.contentType,
                                      env: e.env, state: a.spec.stateless ? nil : (states[actorID] ?? "{}"), resultLimit: configuration.resultLimit), to: proplet)
        }
    }

    public func handleExecutionReport(_ r: ExecutionReport) async {
        guard var e = active[r.executionId], e.attempt == r.attempt, e.status == .running, e.workerId == r.workerId, e.propletId == r.propletId else {
            logger.debug("execution report not expected: ignored", metadata: ["execution": "\(r.executionId)", "attempt": "\(r.attempt)", "from": "\(r.propletId)"])
            return
        }
        dispatchedAt[e.id] = nil
        if r.workerMissing && e.killRequested != true {
            // The proplet does not have the worker (it restarted): lose it, run the message again.
            await lose(r.workerId, reason: r.outcome.error ?? "not on its proplet")
            return
        }
        let o = r.outcome
        e.exitCode = o.exitCode
        e.startedAt = o.startedAt
        e.finishedAt = o.finishedAt ?? WallClock.now()
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
            e.error = o.error ?? ClusterState.describeFailure(o)
        }
        if let state = r.state, actors[e.actorId]?.spec.stateless == false, e.status == .complete {
            do {
                try store.setActorState(actorID: e.actorId, state: state)
                states[e.actorId] = state
            } catch {
                logger.error("store write failed", metadata: ["error": "\(error)"])
            }
        }
        finish(e, logs: TaskLogs(stdout: o.stdoutTail, stderr: o.stderrTail), results: r.results)
        if var w = workers[r.workerId], w.executionId == e.id {
            w.executionId = nil
            w.lastUsedAt = WallClock.now()
            w.executions += 1
            if w.status == .busy { w.status = .ready }
            workers[w.id] = w
            if let a = actors[w.actorId], w.revision < a.revision { retire(w.id) }
        }
        dispatch(e.actorId)
    }

    /// Stores a final execution, takes it out of the inbox and wakes its waiters. What the store
    /// refuses (a full disk) is kept and written again by ``flushUnsaved()``.
    func finish(_ e: ExecutionRecord, logs: TaskLogs = TaskLogs(), results: Data = Data()) {
        active[e.id] = nil
        dispatchedAt[e.id] = nil
        write(.finish(e, logs, results))
        logger.info("execution ended", metadata: ["execution": "\(e.id)", "actor": "\(e.actorId)", "status": "\(e.status.rawValue)",
                                                  "exit_code": "\(e.exitCode.map(String.init) ?? "-")"])
        wake(e)
    }

    /// An execution write, kept when the store refuses it.
    enum ExecutionWrite: Sendable {
        case save(ExecutionRecord)
        case finish(ExecutionRecord, TaskLogs, Data)

        var record: ExecutionRecord {
            switch self {
            case .save(let e), .finish(let e, _, _): e
            }
        }
    }

    /// Writes after what the store refused before, in order; keeps it all when it still refuses.
    func write(_ w: ExecutionWrite) {
        flushUnsaved()
        guard unsaved.isEmpty, perform(w) else {
            let e = w.record
            // A later save does not replace an unsaved finish's logs and results.
            if case .save = w, case .finish = unsaved[e.id] { return }
            if unsaved[e.id] == nil { unsavedOrder.append(e.id) }
            unsaved[e.id] = w
            return
        }
    }

    private func perform(_ w: ExecutionWrite) -> Bool {
        do {
            switch w {
            case .save(let e): try store.saveExecution(e)
            case .finish(let e, let logs, let results): try store.finishExecution(e, logs: logs, results: results)
            }
            return true
        } catch {
            logger.error("store write failed: kept in memory, written again later", metadata: ["execution": "\(w.record.id)", "error": "\(error)"])
            return false
        }
    }

    /// Writes the execution changes the store refused before (called on every tick).
    func flushUnsaved() {
        while let id = unsavedOrder.first {
            if let w = unsaved[id] {
                guard perform(w) else { return }
            }
            unsaved[id] = nil
            unsavedOrder.removeFirst()
        }
    }

    /// At least once: a message whose worker was lost runs once more (at the front of its
    /// queue), then its execution fails with the reason.
    func rerunOrFail(_ execution: ExecutionRecord, reason: String) {
        var e = execution
        dispatchedAt[e.id] = nil
        if e.attempt < 2 && e.killRequested != true && actors[e.actorId] != nil {
            e.attempt += 1
            e.status = .submitted
            e.workerId = nil
            e.propletId = nil
            active[e.id] = e
            queues[e.actorId, default: MessageQueue()].prepend(e.id)
            write(.save(e))
            logger.notice("execution runs again", metadata: ["execution": "\(e.id)", "attempt": "\(e.attempt)", "reason": "\(reason)"])
        } else {
            e.status = .error
            e.error = e.killRequested == true ? "killed on request" : "\(reason) (after a re-run)"
            e.finishedAt = WallClock.now()
            finish(e)
        }
    }

    func wake(_ e: ExecutionRecord) {
        guard let list = waiters.removeValue(forKey: e.id) else { return }
        for (token, c) in list {
            waiterTimers.removeValue(forKey: token)?.cancel()
            c.resume(returning: e)
        }
    }

    /// Waits until the execution is final, at most `timeout`; nil when it is not by then.
    public func wait(for executionID: String, timeout: Duration) async -> ExecutionRecord? {
        if active[executionID] == nil { return unsaved[executionID]?.record ?? (try? store.execution(id: executionID)) }
        let token = UUID()
        return await withCheckedContinuation { (c: CheckedContinuation<ExecutionRecord?, Never>) in
            waiters[executionID, default: [:]][token] = c
            waiterTimers[token] = Task {
                do { try await Task.sleep(for: timeout) } catch { return }
                self.timeOut(executionID, token)
            }
        }
    }

    func timeOut(_ executionID: String, _ token: UUID) {
        waiterTimers[token] = nil
        guard let c = waiters[executionID]?.removeValue(forKey: token) else { return }
        if waiters[executionID]?.isEmpty == true { waiters[executionID] = nil }
        c.resume(returning: nil)
    }

    // MARK: API

    public func inboxLength(_ actorID: String) throws -> Int {
        _ = try actor(actorID)
        return queues[actorID]?.count ?? 0
    }

    /// Drops every queued message (running ones go on); returns how many.
    public func purge(_ actorID: String) throws -> Int {
        _ = try actor(actorID)
        let ids = queues[actorID]?.removeAll() ?? []
        for id in ids {
            guard var e = active[id] else { continue }
            e.status = .error
            e.error = "purged from the inbox"
            e.finishedAt = WallClock.now()
            finish(e)
        }
        logger.info("inbox purged", metadata: ["actor": "\(actorID)", "messages": "\(ids.count)"])
        return ids.count
    }

    public func execution(_ actorID: String, _ executionID: String) throws -> ExecutionRecord {
        _ = try actor(actorID)
        if let e = active[executionID], e.actorId == actorID { return e }
        guard let e = try unsaved[executionID]?.record ?? store.execution(id: executionID), e.actorId == actorID else {
            throw APIError.notFound("actor \(actorID) has no execution \(executionID)")
        }
        return e
    }

    public func executions(_ actorID: String, offset: Int, limit: Int) throws -> (total: Int, executions: [ExecutionRecord], totals: ExecutionTotals) {
        _ = try actor(actorID)
        let (total, list) = try store.executions(actorID: actorID, offset: offset, limit: limit)
        return (total, list.map { active[$0.id] ?? unsaved[$0.id]?.record ?? $0 }, try store.executionTotals(actorID: actorID))
    }

    public func executionLogs(_ actorID: String, _ executionID: String) throws -> TaskLogs {
        _ = try execution(actorID, executionID)
        return try store.executionLogs(id: executionID) ?? TaskLogs()
    }

    public func executionResults(_ actorID: String, _ executionID: String) throws -> Data {
        _ = try execution(actorID, executionID)
        return try store.executionResults(id: executionID) ?? Data()
    }

    /// Force-quits an execution: a queued one is dropped, a running one killed.
    public func kill(_ actorID: String, _ executionID: String) throws -> ExecutionRecord {
        let e = try execution(actorID, executionID)
        guard var running = active[e.id] else { throw APIError.conflict("execution \(executionID) has ended (\(e.status.rawValue))") }
        if running.status == .submitted {
            queues[actorID]?.remove(running.id)
            running.status = .error
            running.error = "cancelled before it ran"
            running.finishedAt = WallClock.now()
            finish(running)
            return running
        }
        running.killRequested = true
        active[running.id] = running
        if let p = running.propletId, let w = running.workerId {
            bus.send(ExecutionCommand(action: .kill, executionId: running.id, attempt: running.attempt, workerId: w), to: p)
        }
        logger.info("killing execution", metadata: ["execution": "\(running.id)", "actor": "\(actorID)"])
        return running
    }
}
