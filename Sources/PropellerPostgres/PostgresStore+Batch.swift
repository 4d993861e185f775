import Foundation
import NIOCore
import PostgresNIO
import PropellerCore
import PropellerManager

/// A batch in a handful of statements: the rows of each kind travel as one JSON array bound as
/// a parameter and expanded by `json_to_recordset`, so a batch of a thousand task changes costs
/// the server one statement per table, not a thousand (the per-statement cost, not the commit,
/// is what limits a busy manager). The actor layer's writes keep their order, one statement each.
extension PostgresStore {
    public func commit(_ batch: StoreBatch) throws {
        guard !batch.isEmpty else { return }
        try write("write \(batch.count) changes") { session in
            var futures: [EventLoopFuture<PostgresQueryResult>] = []
            if !batch.newTasks.isEmpty {
                let rows = try Self.rows(batch.newTasks.map { try TaskRow($0, spec: true) })
                futures.append(session.send("""
                    INSERT INTO tasks (id, name, spec, state, reason, phase, attempt, assigned_proplet, stop_requested, created_at, updated_at, started_at, finished_at, result)
                    SELECT id, name, spec, state, reason, phase, attempt, assigned_proplet, stop_requested, created_at, updated_at, started_at, finished_at, result
                    FROM json_to_recordset(\(rows)::json) AS x(\(unescaped: TaskRow.columns))
                    """))
            }
            if !batch.tasks.isEmpty {
                let rows = try Self.rows(batch.tasks.map { try TaskRow($0, spec: false) })
                futures.append(session.send("""
                    UPDATE tasks SET state = x.state, reason = x.reason, phase = x.phase, attempt = x.attempt, assigned_proplet = x.assigned_proplet,
                        stop_requested = x.stop_requested, created_at = x.created_at, updated_at = x.updated_at, started_at = x.started_at,
                        finished_at = x.finished_at, result = x.result
                    FROM json_to_recordset(\(rows)::json) AS x(\(unescaped: TaskRow.columns)) WHERE tasks.id = x.id
                    """))
                // A final result carries the authoritative output tails (bytes: base64 in the JSON).
                let logs = batch.tasks.flatMap { t -> [LogRow] in
                    guard let r = t.result, t.state.isTerminal, r.attempt == t.attempt else { return [] }
                    return [LogRow(taskID: t.id, stream: "stdout", text: r.stdoutTail), LogRow(taskID: t.id, stream: "stderr", text: r.stderrTail)]
                }
                if !logs.isEmpty {
                    let rows = try Self.rows(logs)
                    futures.append(session.send("""
                        INSERT INTO task_logs (task_id, stream, data)
                        SELECT task_id, stream, decode(data, 'base64') FROM json_to_recordset(\(rows)::json) AS x(task_id text, stream text, data text)
                        ON CONFLICT (task_id, stream) DO UPDATE SET data = excluded.data
                        """))
                }
            }
            if !batch.transitions.isEmpty {
                let rows = try Self.rows(batch.transitions.map(TransitionRow.init))
                futures.append(session.send("""
                    INSERT INTO task_transitions (task_id, state, attempt, at, reason)
                    SELECT task_id, state, attempt, at, reason FROM json_to_recordset(\(rows)::json)
                        AS x(task_id text, state text, attempt bigint, at double precision, reason text)
                    """))
            }
            if !batch.proplets.isEmpty {
                let rows = try Self.rows(try batch.proplets.map { p in
                    var stored = p
                    stored.allocated = nil
                    stored.taskCount = nil
                    return PropletRow(id: p.id, body: try Self.json(stored))
                })
                futures.append(session.send("""
                    INSERT INTO proplets (id, body) SELECT id, body FROM json_to_recordset(\(rows)::json) AS x(id text, body text)
                    ON CONFLICT (id) DO UPDATE SET body = excluded.body
                    """))
            }
            for w in batch.actorWrites { futures += try Self.write(w, session) }
            return futures
        }
    }

    /// Rows as one JSON array (the parameter of `json_to_recordset`).
    private static func rows<T: Encodable>(_ rows: [T]) throws -> String {
        String(decoding: try rowEncoder.encode(rows), as: UTF8.self)
    }

    private static let rowEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return e
    }()
}

/// A task's columns (absent keys are NULL).
private struct TaskRow: Encodable {
    static let columns = """
        id text, name text, spec text, state text, reason text, phase text, attempt bigint, assigned_proplet text, stop_requested boolean,
        created_at double precision, updated_at double precision, started_at double precision, finished_at double precision, result text
        """
    var id, name: String
    var spec: String?
    var state: String
    var reason, phase: String?
    var attempt: Int
    var assignedProplet: String?
    var stopRequested: Bool
    var createdAt, updatedAt: Double
    var startedAt, finishedAt: Double?
    var result: String?

    init(_ t: TaskRecord, spec withSpec: Bool) throws {
        id = t.id
        name = t.spec.name
        spec = withSpec ? try PostgresStore.json(t.spec) : nil
        state = t.state.rawValue
        reason = t.reason
        phase = t.phase
        attempt = t.attempt
        assignedProplet = t.assignedProplet
        stopRequested = t.stopRequested
        createdAt = t.createdAt
        updatedAt = t.updatedAt
        startedAt = t.startedAt
        finishedAt = t.finishedAt
        result = try t.result.map { try PostgresStore.json($0) }
    }

    enum CodingKeys: String, CodingKey {
        case id, name, spec, state, reason, phase, attempt, result
        case assignedProplet = "assigned_proplet", stopRequested = "stop_requested", createdAt = "created_at", updatedAt = "updated_at"
        case startedAt = "started_at", finishedAt = "finished_at"
    }
}

private struct TransitionRow: Encodable {
    var taskId, state: String
    var attempt: Int
    var at: Double
    var reason: String?

    init(_ t: TaskTransition) {
        taskId = t.taskId
        state = t.state.rawValue
        attempt = t.attempt
        at = t.at
        reason = t.reason
    }

    enum CodingKeys: String, CodingKey {
        case taskId = "task_id", state, attempt, at, reason
    }
}

private struct LogRow: Encodable {
    var taskId, stream, data: String

    init(taskID: String, stream: String, text: String) {
        taskId = taskID
        self.stream = stream
        data = Data(text.utf8).base64EncodedString()
    }

    enum CodingKeys: String, CodingKey {
        case taskId = "task_id", stream, data
    }
}

private struct PropletRow: Encodable {
    var id, body: String
}
