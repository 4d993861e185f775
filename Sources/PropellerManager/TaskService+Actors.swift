import Foundation
import PropellerCore

/// The actor layer's side of the driver: commands whose write must succeed before anything
/// changes, the actor store's writes in order (kept and written again when the store refuses
/// them), run messages with their bodies read from the inbox, and synchronous senders waiting
/// for an execution to end.
extension TaskService {
    /// Writes an event's actor changes in order, after what the store refused before.
    /// Refuses a command that writes directly while the store refuses the writes that wait.
    private func requireStoreTakingWrites() throws {
        if let refusal = storeRefusal {
            throw PropellerError(.resourceExhausted, "the store has not taken earlier writes yet (is its disk full?): \(refusal); try again")
        }
    }

    /// Sends a run with its message read from the inbox (or a kill); returns the event for a run
    /// whose message cannot be read.
    func send(_ command: ExecutionCommand, to proplet: String) -> ClusterEvent? {
        guard command.action == .run else {
            bus.send(command, to: proplet)
            return nil
        }
        var run = command
        do {
            guard let m = try store.message(executionID: command.executionId) else { return .messageUnreadable(command.executionId, missing: true) }
            run.message = m.body
            run.contentType = m.contentType
        } catch {
            logger.error("cannot read a message from the inbox", metadata: ["execution": "\(command.executionId)", "error": "\(error)"])
            return .messageUnreadable(command.executionId, missing: false)
        }
        bus.send(withIdentity(run), to: proplet)
        return nil
    }

    /// Loads actors, workers and inboxes (after the tasks and proplets).
    func recoverActors() throws {
        let stored = try store.actors()
        var states: [String: String] = [:]
        for a in stored where !a.spec.stateless { states[a.id] = try store.actorState(actorID: a.id) }
        try apply(.actorsRecovered(actors: stored, states: states, workers: try store.workers(), inbox: try store.inbox().map(\.execution)))
    }

    // MARK: Commands

    public func createActor(_ spec: ActorSpec) async throws -> ActorRecord {
        try requireLease()
        try requireStoreTakingWrites()
        let a = ClusterState.newActor(spec, id: UUID().uuidString.lowercased(), at: WallClock.now(), configuration: configuration)
        try requireUniqueName(a)
        try store.saveActor(a)
        if !a.spec.stateless { try store.setActorState(actorID: a.id, state: "{}") }
        let reply = try apply(.actorCreated(a))
        try await commandWritten()
        return try actorReply(reply)
    }

    /// Applies `change` to the spec; a change to what workers run bumps the revision and
    /// replaces the workers (queued messages wait for the new ones).
    public func updateActor(_ id: String, _ change: (inout ActorSpec) throws -> Void) async throws -> ActorRecord {
        _ = try state.actor(id)
        // Earlier writes of the actor first: the record written here is the newest.
        try await requireWritesTaken()
        let a = try state.updatedActor(id, at: WallClock.now(), change)
        try requireUniqueName(a)
        try store.saveActor(a)
        let reply = try apply(.actorUpdated(a))
        try await commandWritten()
        return try actorReply(reply)
    }

    /// An actor's name is its handle in its namespace (`actor send echoer hi`): two of one name
    /// there would make it ambiguous, so the second is refused (no suspension between this
    /// check and the write, so two requests at once cannot both pass).
    private func requireUniqueName(_ a: ActorRecord) throws {
        let namespace = a.spec.namespace.orDefaultNamespace
        if let other = state.actors.records.values.first(where: { $0.id != a.id && $0.spec.name == a.spec.name && $0.spec.namespace.orDefaultNamespace == namespace }) {
            throw APIError.conflict("namespace \(namespace) has an actor named \(a.spec.name) already (\(other.id)): names are unique in a namespace")
        }
    }

    /// Deletes an actor: its workers are retired (running executions killed), its inbox,
    /// executions and state removed.
    public func deleteActor(_ id: String) async throws {
        _ = try state.actor(id)
        try await requireWritesTaken()  // a write of the actor after the delete would bring it back
        _ = try state.actor(id)
        try store.deleteActor(id: id)
        try apply(.actorDeleted(id))
        try await commandWritten()
    }

    public func setActorState(_ id: String, _ json: String) async throws {
        try state.checkStateful(id)
        try await requireWritesTaken()  // an execution's state written before, not after
        try state.checkStateful(id)
        try store.setActorState(actorID: id, state: json)
        try apply(.actorStateSet(id, state: json))
        try await commandWritten()
    }

    /// Queues a message; returns its execution (status `submitted`).
    public func sendMessage(_ actorID: String, body: Data, contentType: String, env: [String: String]) async throws -> ExecutionRecord {
        try requireLease()
        _ = try state.actor(actorID)
        let e = ExecutionRecord(id: UUID().uuidString.lowercased(), actorId: actorID, contentType: contentType, messageBytes: body.count, env: env, submittedAt: WallClock.now())
        // The message is in the store (a new row) before the state knows of it.
        try store.enqueue(e, message: InboxMessage(executionID: e.id, actorID: actorID, body: body, contentType: contentType))
        let reply = try apply(.messageQueued(e))
        try await commandWritten()
        guard case .execution(let queued) = reply else { return e }
        return queued
    }

    public func ensureWorkers(_ actorID: String, count: Int) async throws -> [WorkerRecord] {
        let reply = try apply(.ensureWorkers(actor: actorID, count: count))
        try await commandWritten()
        guard case .workers(let list) = reply else { return try state.workerList(actorID) }
        return list
    }

    public func retireWorker(_ actorID: String, workerID: String) async throws {
        try apply(.retireWorker(actor: actorID, worker: workerID))
        try await commandWritten()
    }

    /// Drops every queued message (running ones go on); returns how many.
    public func purge(_ actorID: String) async throws -> Int {
        let reply = try apply(.purge(actor: actorID))
        try await commandWritten()
        guard case .count(let n) = reply else { return 0 }
        return n
    }

    /// Force-quits an execution: a queued one is dropped, a running one killed.
    public func killExecution(_ actorID: String, _ executionID: String) async throws -> ExecutionRecord {
        let stored = state.actors.executions[executionID] == nil ? try storedExecution(executionID) : nil
        let reply = try apply(.killExecution(actor: actorID, execution: executionID, stored: stored))
        try await commandWritten()
        guard case .execution(let e) = reply else {
            throw PropellerError(.internalError, "the command had no execution to answer with")
        }
        return e
    }

    /// Worker and execution reports from proplets (`wait`: as for ``handleHeartbeat(_:wait:)``).
    public func handleWorkerReport(_ r: WorkerReport, wait: Bool = true) async {
        deliver(.workerReport(r))
        if wait { await settle() }
    }
    public func handleExecutionReport(_ r: ExecutionReport, wait: Bool = true) async {
        deliver(.executionReport(r))
        if wait { await settle() }
    }

    /// The autoscaler's pass; writes what the store refused before.
    public func autoscale() async {
        if hasStagedWrites { startWriting() }
        deliver(.autoscale)
        await settle()
    }

    private func actorReply(_ reply: ClusterReply?) throws -> ActorRecord {
        guard case .actor(let a) = reply else { throw PropellerError(.internalError, "the command had no actor to answer with") }
        return a
    }

    // MARK: Reads

    public func actorList() -> [ActorRecord] { state.actorList() }
    public func actor(_ id: String) throws -> ActorRecord { try state.actor(id) }
    public func workerList(_ actorID: String) throws -> [WorkerRecord] { try state.workerList(actorID) }

    public func actorState(_ id: String) throws -> String {
        try state.checkStateful(id)
        return state.actors.states[id] ?? "{}"
    }

    public func inboxLength(_ actorID: String) throws -> Int {
        _ = try state.actor(actorID)
        return state.actors.queued(actorID)
    }

    /// An execution as stored, or as it will be once the store takes the writes that wait.
    func storedExecution(_ id: String) throws -> ExecutionRecord? {
        try unsavedExecution(id) ?? store.execution(id: id)
    }

    private func unsavedExecution(_ id: String) -> ExecutionRecord? {
        unsavedActorWrites.reversed().lazy.compactMap(\.writtenExecution).first { $0.id == id }
    }

    public func execution(_ actorID: String, _ executionID: String) throws -> ExecutionRecord {
        _ = try state.actor(actorID)
        if let e = state.actors.executions[executionID], e.actorId == actorID { return e }
        guard let e = try storedExecution(executionID), e.actorId == actorID else {
            throw APIError.notFound("actor \(actorID) has no execution \(executionID)")
        }
        return e
    }

    public func executions(_ actorID: String, offset: Int, limit: Int) throws -> (total: Int, executions: [ExecutionRecord], totals: ExecutionTotals) {
        _ = try state.actor(actorID)
        let (total, list) = try store.executions(actorID: actorID, offset: offset, limit: limit)
        let current = list.map { state.actors.executions[$0.id] ?? unsavedExecution($0.id) ?? $0 }
        return (total, current, try store.executionTotals(actorID: actorID))
    }

    public func executionLogs(_ actorID: String, _ executionID: String) async throws -> TaskLogs {
        _ = try execution(actorID, executionID)
        if unsavedExecution(executionID) != nil { _ = await written() }  // its output is written with it
        return try store.executionLogs(id: executionID) ?? TaskLogs()
    }

    public func executionResults(_ actorID: String, _ executionID: String) async throws -> Data {
        _ = try execution(actorID, executionID)
        if unsavedExecution(executionID) != nil { _ = await written() }
        return try store.executionResults(id: executionID) ?? Data()
    }

    // MARK: Synchronous senders

    /// Waits until the execution is final, at most `timeout`; nil when it is not by then.
    public func wait(for executionID: String, timeout: Duration) async -> ExecutionRecord? {
        if state.actors.executions[executionID] == nil {
            // Ended: answered once its output is in the store (the caller reads it next).
            if unsavedExecution(executionID) != nil { _ = await written() }
            return try? storedExecution(executionID)
        }
        let token = UUID()
        return await withCheckedContinuation { (c: CheckedContinuation<ExecutionRecord?, Never>) in
            executionWaiters[executionID, default: [:]][token] = c
            executionWaiterTimers[token] = Task {
                do { try await Task.sleep(for: timeout) } catch { return }
                self.timeOut(executionID, token)
            }
        }
    }

    func timeOut(_ executionID: String, _ token: UUID) {
        executionWaiterTimers[token] = nil
        guard let c = executionWaiters[executionID]?.removeValue(forKey: token) else { return }
        if executionWaiters[executionID]?.isEmpty == true { executionWaiters[executionID] = nil }
        c.resume(returning: nil)
    }

    func wake(_ e: ExecutionRecord) {
        guard let list = executionWaiters.removeValue(forKey: e.id) else { return }
        for (token, c) in list {
            executionWaiterTimers.removeValue(forKey: token)?.cancel()
            c.resume(returning: e)
        }
    }
}

extension ActorStoreWrite {
    /// The execution record a write stores.
    var writtenExecution: ExecutionRecord? {
        switch self {
        case .saveExecution(let e), .finishExecution(let e, _, _): e
        default: nil
        }
    }
}
