import Foundation
import NIOCore
import PostgresNIO
import PropellerCore
import PropellerManager

extension PostgresStore {
    public func saveActor(_ actor: ActorRecord) throws {
        try write("save actor \(actor.id)") { session in try Self.write(.saveActor(actor), session) }
    }

    /// The statements of one write of the actor layer, inside the caller's transaction.
    static func write(_ w: ActorStoreWrite, _ session: Session) throws -> [EventLoopFuture<PostgresQueryResult>] {
        switch w {
        case .saveActor(let actor):
            let body = try json(actor)
            return [session.send("INSERT INTO actors (id, body) VALUES (\(actor.id), \(body)) ON CONFLICT (id) DO UPDATE SET body = excluded.body")]
        case .setActorState(let id, let state):
            return [session.send("UPDATE actors SET state = \(state) WHERE id = \(id)")]
        case .saveWorker(let worker):
            // A worker of a deleted actor is not brought back.
            let body = try json(worker)
            return [session.send("""
                INSERT INTO actor_workers (id, actor_id, body) SELECT \(worker.id), \(worker.actorId), \(body)
                WHERE EXISTS (SELECT 1 FROM actors WHERE id = \(worker.actorId))
                ON CONFLICT (id) DO UPDATE SET body = excluded.body
                """)]
        case .deleteWorker(let id):
            return [session.send("DELETE FROM actor_workers WHERE id = \(id)")]
        case .saveExecution(let execution):
            return [try upsert(execution, session, onlyIfActorExists: true)]
        case .finishExecution(let execution, let logs, let results):
            return [try upsert(execution, session, onlyIfActorExists: true),
                    try session.send("""
                        UPDATE actor_executions SET stdout = \(Data(logs.stdout.utf8)), stderr = \(Data(logs.stderr.utf8)), results = \(results)
                        WHERE id = \(execution.id)
                        """),
                    session.send("DELETE FROM actor_inbox WHERE execution_id = \(execution.id)")]
        }
    }

    public func deleteActor(id: String) throws {
        try write("delete actor \(id)") { session in [session.send("DELETE FROM actors WHERE id = \(id)")] }
    }

    public func actors() throws -> [ActorRecord] {
        try read("read actors") { session in
            try session.run("SELECT body FROM actors ORDER BY seq").map { try Self.value(ActorRecord.self, try $0.decode(String.self)) }
        }
    }

    /// Inserts or updates an execution; `onlyIfActorExists`: an execution of a deleted actor is
    /// not brought back.
    private static func upsert(_ e: ExecutionRecord, _ session: Session, onlyIfActorExists: Bool) throws -> EventLoopFuture<PostgresQueryResult> {
        let body = try json(e)
        let cpu = e.cpuUsec.map { Int64(clamping: $0) }
        let memory = e.memoryPeakBytes.map { Int64(clamping: $0) }
        // $2 is the actor id bound below.
        let guardClause = onlyIfActorExists ? "WHERE EXISTS (SELECT 1 FROM actors WHERE id = $2)" : ""
        return session.send("""
            INSERT INTO actor_executions (id, actor_id, status, runtime, cpu_usec, memory_peak, body)
            SELECT \(e.id), \(e.actorId), \(e.status.rawValue), \(e.runtime), \(cpu), \(memory), \(body) \(unescaped: guardClause)
            ON CONFLICT (id) DO UPDATE SET status = excluded.status, runtime = excluded.runtime, cpu_usec = excluded.cpu_usec,
                memory_peak = excluded.memory_peak, body = excluded.body
            """)
    }

    public func enqueue(_ execution: ExecutionRecord, message: InboxMessage) throws {
        try write("enqueue a message for actor \(execution.actorId)") { session in
            [try Self.upsert(execution, session, onlyIfActorExists: false),
             try session.send("""
                INSERT INTO actor_inbox (execution_id, actor_id, content_type, body)
                VALUES (\(message.executionID), \(message.actorID), \(message.contentType), \(message.body))
                """)]
        }
    }

    public func saveExecution(_ execution: ExecutionRecord) throws {
        try write("save execution \(execution.id)") { session in try Self.write(.saveExecution(execution), session) }
    }

    public func finishExecution(_ execution: ExecutionRecord, logs: TaskLogs, results: Data) throws {
        try write("finish execution \(execution.id)") { session in try Self.write(.finishExecution(execution, logs, results), session) }
    }

    public func inbox() throws -> [(execution: ExecutionRecord, message: InboxMessage)] {
        try read("read the inboxes") { session in
            try session.run("""
                SELECT e.body, i.execution_id, i.actor_id, i.content_type, i.body FROM actor_inbox i
                JOIN actor_executions e ON e.id = i.execution_id ORDER BY i.seq
                """).map { row in
                let (execution, executionID, actorID, contentType, body) = try row.decode((String, String, String, String, Data).self)
                return (try Self.value(ExecutionRecord.self, execution), InboxMessage(executionID: executionID, actorID: actorID, body: body, contentType: contentType))
            }
        }
    }

    public func message(executionID: String) throws -> InboxMessage? {
        try read("read the message of execution \(executionID)") { session in
            try session.run("SELECT actor_id, content_type, body FROM actor_inbox WHERE execution_id = \(executionID)").first { _ in true }.map { row in
                let (actorID, contentType, body) = try row.decode((String, String, Data).self)
                return InboxMessage(executionID: executionID, actorID: actorID, body: body, contentType: contentType)
            }
        }
    }

    public func execution(id: String) throws -> ExecutionRecord? {
        try read("read execution \(id)") { session in
            try session.run("SELECT body FROM actor_executions WHERE id = \(id)").first { _ in true }.map {
                try Self.value(ExecutionRecord.self, try $0.decode(String.self))
            }
        }
    }

    public func executions(actorID: String, offset: Int, limit: Int) throws -> (total: Int, executions: [ExecutionRecord]) {
        try read("read the executions of actor \(actorID)") { session in
            let total = try Self.count(session.run("SELECT COUNT(*) FROM actor_executions WHERE actor_id = \(actorID)"))
            let list = try session.run("SELECT body FROM actor_executions WHERE actor_id = \(actorID) ORDER BY seq DESC LIMIT \(limit) OFFSET \(offset)").map {
                try Self.value(ExecutionRecord.self, try $0.decode(String.self))
            }
            return (total, list)
        }
    }

    public func executionTotals(actorID: String) throws -> ExecutionTotals {
        try read("sum the executions of actor \(actorID)") { session in
            guard let row = try session.run("""
                SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'complete'), COUNT(*) FILTER (WHERE status = 'error'),
                       COALESCE(SUM(runtime), 0)::float8, COALESCE(SUM(cpu_usec), 0)::float8, COALESCE(MAX(memory_peak), 0)
                FROM actor_executions WHERE actor_id = \(actorID)
                """).first(where: { _ in true }) else { return ExecutionTotals() }
            let (n, complete, error, runtime, cpu, memory) = try row.decode((Int, Int, Int, Double, Double, Int64).self)
            return ExecutionTotals(count: n, complete: complete, error: error, runtime: runtime, cpuUsec: UInt64(max(0, cpu)), memoryPeakBytes: UInt64(max(0, memory)))
        }
    }

    public func executionLogs(id: String) throws -> TaskLogs? {
        try read("read the logs of execution \(id)") { session in
            try session.run("SELECT stdout, stderr FROM actor_executions WHERE id = \(id)").first { _ in true }.map { row in
                let (out, err) = try row.decode((Data?, Data?).self)
                return TaskLogs(stdout: String(decoding: out ?? Data(), as: UTF8.self), stderr: String(decoding: err ?? Data(), as: UTF8.self))
            }
        }
    }

    public func executionResults(id: String) throws -> Data? {
        try read("read the results of execution \(id)") { session in
            try session.run("SELECT results FROM actor_executions WHERE id = \(id)").first { _ in true }.map { row in
                try row.decode(Data?.self) ?? Data()
            }
        }
    }

    public func saveWorker(_ worker: WorkerRecord) throws {
        try write("save worker \(worker.id)") { session in try Self.write(.saveWorker(worker), session) }
    }

    public func deleteWorker(id: String) throws {
        try write("delete worker \(id)") { session in try Self.write(.deleteWorker(id), session) }
    }

    public func workers() throws -> [WorkerRecord] {
        try read("read workers") { session in
            try session.run("SELECT body FROM actor_workers").map { try Self.value(WorkerRecord.self, try $0.decode(String.self)) }
        }
    }

    public func actorState(actorID: String) throws -> String? {
        try read("read the state of actor \(actorID)") { session in
            try session.run("SELECT state FROM actors WHERE id = \(actorID)").first { _ in true }.flatMap { try $0.decode(String?.self) }
        }
    }

    public func setActorState(actorID: String, state: String) throws {
        try write("save the state of actor \(actorID)") { session in try Self.write(.setActorState(actor: actorID, state: state), session) }
    }
}
