import Foundation
import PropellerCore

/// The API's view of the actor layer (in the spirit of TACC's Abaco: an actor is an image; each
/// message posted to its inbox runs as an execution on a warm worker).
///
/// It keeps no state of its own: actors, workers and executions are part of the one
/// ``ClusterState`` (its ``ActorTable``), changed by the one driver, ``TaskService``, with the
/// same events as tasks and proplets. So a heartbeat reconciles tasks and workers in one
/// transition, and a worker's reservation is taken in the same step as its placement.
public struct ActorService: Sendable {
    public let tasks: TaskService
    public var configuration: ActorConfiguration { tasks.configuration.actors }

    public init(tasks: TaskService) {
        self.tasks = tasks
    }

    public func create(_ spec: ActorSpec) async throws -> ActorRecord { try await tasks.createActor(spec) }
    public func list() async -> [ActorRecord] { await tasks.actorList() }
    public func actor(_ id: String) async throws -> ActorRecord { try await tasks.actor(id) }

    /// Applies `change` to the spec; a change to what workers run bumps the revision and
    /// replaces the workers (queued messages wait for the new ones).
    public func update(_ id: String, _ change: @Sendable (inout ActorSpec) throws -> Void) async throws -> ActorRecord {
        try await tasks.updateActor(id, change)
    }

    /// Deletes an actor: its workers are retired (running executions killed), its inbox,
    /// executions and state removed.
    public func delete(_ id: String) async throws { try await tasks.deleteActor(id) }
    public func state(_ id: String) async throws -> String { try await tasks.actorState(id) }
    public func setState(_ id: String, _ json: String) async throws { try await tasks.setActorState(id, json) }

    /// Queues a message; returns its execution (status `submitted`).
    public func send(_ actorID: String, body: Data, contentType: String, env: [String: String]) async throws -> ExecutionRecord {
        try await tasks.sendMessage(actorID, body: body, contentType: contentType, env: env)
    }

    /// Waits until the execution is final, at most `timeout`; nil when it is not by then.
    public func wait(for executionID: String, timeout: Duration) async -> ExecutionRecord? { await tasks.wait(for: executionID, timeout: timeout) }
    public func inboxLength(_ actorID: String) async throws -> Int { try await tasks.inboxLength(actorID) }
    /// Drops every queued message (running ones go on); returns how many.
    public func purge(_ actorID: String) async throws -> Int { try await tasks.purge(actorID) }
    public func execution(_ actorID: String, _ executionID: String) async throws -> ExecutionRecord { try await tasks.execution(actorID, executionID) }

    public func executions(_ actorID: String, offset: Int, limit: Int) async throws -> (total: Int, executions: [ExecutionRecord], totals: ExecutionTotals) {
        try await tasks.executions(actorID, offset: offset, limit: limit)
    }

    public func executionLogs(_ actorID: String, _ executionID: String) async throws -> TaskLogs { try await tasks.executionLogs(actorID, executionID) }
    public func executionResults(_ actorID: String, _ executionID: String) async throws -> Data { try await tasks.executionResults(actorID, executionID) }
    /// Force-quits an execution: a queued one is dropped, a running one killed.
    public func kill(_ actorID: String, _ executionID: String) async throws -> ExecutionRecord { try await tasks.killExecution(actorID, executionID) }

    public func workerList(_ actorID: String) async throws -> [WorkerRecord] { try await tasks.workerList(actorID) }
    /// Makes sure at least `count` workers exist (up to `max_workers`).
    public func ensureWorkers(_ actorID: String, count: Int) async throws -> [WorkerRecord] { try await tasks.ensureWorkers(actorID, count: count) }
    public func retireWorker(_ actorID: String, workerID: String) async throws { try await tasks.retireWorker(actorID, workerID: workerID) }

    // Reports and timers, for tests that play the proplets (the bus hands them to the driver).
    public func handleWorkerReport(_ r: WorkerReport) async { await tasks.handleWorkerReport(r) }
    public func handleExecutionReport(_ r: ExecutionReport) async { await tasks.handleExecutionReport(r) }
    public func handleHeartbeat(_ hb: PropletHeartbeat) async { await tasks.handleHeartbeat(hb) }
    public func tick() async { await tasks.autoscale() }
}
