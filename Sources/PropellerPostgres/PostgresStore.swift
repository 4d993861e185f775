import Foundation
import Logging
import NIOCore
import PostgresNIO
import PropellerCore
import PropellerManager

/// ``ManagerStore`` on PostgreSQL, which several managers share (`--store postgres://…`).
///
/// The same tables as ``SQLiteStore`` (mutable status in columns, the spec and the result as
/// JSON), written in transactions whose statements are pipelined on one connection. When this
/// manager leads (``fence(epoch:)``), every write transaction first takes a share lock on the
/// leadership row and checks that its epoch is still this manager's: a deposed leader's late
/// writes are refused by the database, and a new leader's takeover waits for writes in flight.
public final class PostgresStore: ManagerStore, TokenStore, @unchecked Sendable {
    public let location: PostgresLocation
    let connections: PostgresConnections
    private let fenceEpoch = Locked<Int64?>(nil)

    /// Connects to the database at `url` and brings its schema up to date.
    public convenience init(url: String, timeout: Duration = .seconds(10), logger: Logger = Logger(label: "propeller.postgres")) throws {
        try self.init(location: PostgresLocation(url: url), timeout: timeout, logger: logger)
    }

    /// Connects to the database at `location` and brings its schema up to date.
    public init(location: PostgresLocation, timeout: Duration = .seconds(10), logger: Logger = Logger(label: "propeller.postgres")) throws {
        self.location = location
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        connections = try PostgresConnections(location: location, timeout: .nanoseconds(nanoseconds), logger: logger)
        do {
            let applied = try PostgresSchema.migrate(connections)
            if !applied.isEmpty { logger.notice("store schema migrated", metadata: ["store": "\(location)", "versions": "\(applied.joined(separator: ","))"]) }
        } catch {
            throw PropellerError(.systemCall, "store \(location): open: \(describe(error))")
        }
    }

    deinit { connections.shutdown() }

    /// From now on every write must be made under `epoch` (nil: no leadership, one manager).
    public func fence(epoch: Int64?) { fenceEpoch.withLock { $0 = epoch } }

    static let encoder = WireCoding.encoder()
    static let decoder = WireCoding.decoder()

    static func json<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func value<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try decoder.decode(type, from: Data(text.utf8))
    }

    func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PropellerError {
            throw error
        } catch {
            throw PropellerError(.systemCall, "store \(location): \(what): \(describe(error))")
        }
    }

    /// Reads on a pooled connection (no transaction: each statement sees committed data).
    @discardableResult
    func read<T>(_ what: String, _ body: (Session) throws -> T) throws -> T {
        try wrap(what) { try connections.with(body) }
    }

    /// One write transaction: `body` sends its statements (pipelined) and returns their futures;
    /// the fence, when set, is checked in the same transaction before COMMIT.
    func write(_ what: String, _ body: (Session) throws -> [EventLoopFuture<PostgresQueryResult>]) throws {
        let epoch = fenceEpoch.withLock { $0 }
        try wrap(what) {
            try connections.with { session in
                let begin = session.send("BEGIN")
                let fence = epoch.map { session.send("SELECT 1 FROM leadership WHERE id = 1 AND epoch = \($0) FOR SHARE") }
                var futures = [begin]
                if let fence { futures.append(fence) }
                do {
                    futures += try body(session)
                } catch {
                    try? session.wait(futures)
                    throw error
                }
                try session.wait(futures)
                if let fence, let epoch, try Session.wait(fence, timeout: session.timeout).rows.isEmpty {
                    throw PropellerError(.unavailable, "store \(location): \(what): refused, this manager no longer leads (epoch \(epoch) was superseded)")
                }
                try session.run("COMMIT")
            }
        }
    }

    public func insertTasks(_ tasks: [TaskRecord], transitions: [TaskTransition]) throws {
        try write("insert \(tasks.count) tasks") { session in
            try Self.insert(tasks, session) + transitions.map { Self.insert($0, session) }
        }
    }

    private static func insert(_ tasks: [TaskRecord], _ session: Session) throws -> [EventLoopFuture<PostgresQueryResult>] {
        try tasks.map { t in
            let spec = try json(t.spec)
            let result = try t.result.map { try json($0) }
            return session.send("""
                INSERT INTO tasks (id, name, spec, state, reason, phase, attempt, assigned_proplet, stop_requested, created_at, updated_at, started_at, finished_at, result)
                VALUES (\(t.id), \(t.spec.name), \(spec), \(t.state.rawValue), \(t.reason), \(t.phase), \(t.attempt), \(t.assignedProplet), \(t.stopRequested),
                        \(t.createdAt), \(t.updatedAt), \(t.startedAt), \(t.finishedAt), \(result))
                """)
        }
    }

    private static func insert(_ t: TaskTransition, _ session: Session) -> EventLoopFuture<PostgresQueryResult> {
        session.send("INSERT INTO task_transitions (task_id, state, attempt, at, reason) VALUES (\(t.taskId), \(t.state.rawValue), \(t.attempt), \(t.at), \(t.reason))")
    }

    public func saveTasks(_ tasks: [TaskRecord], transitions: [TaskTransition]) throws {
        if tasks.isEmpty && transitions.isEmpty { return }
        try write("save \(tasks.count) tasks") { session in
            try Self.update(tasks, session) + transitions.map { Self.insert($0, session) }
        }
    }

    private static func update(_ tasks: [TaskRecord], _ session: Session) throws -> [EventLoopFuture<PostgresQueryResult>] {
        var futures: [EventLoopFuture<PostgresQueryResult>] = []
        for t in tasks {
            let result = try t.result.map { try json($0) }
            futures.append(session.send("""
                UPDATE tasks SET state = \(t.state.rawValue), reason = \(t.reason), phase = \(t.phase), attempt = \(t.attempt),
                    assigned_proplet = \(t.assignedProplet), stop_requested = \(t.stopRequested), created_at = \(t.createdAt), updated_at = \(t.updatedAt),
                    started_at = \(t.startedAt), finished_at = \(t.finishedAt), result = \(result) WHERE id = \(t.id)
                """))
            // A final result carries the authoritative output tails.
            if let r = t.result, t.state.isTerminal, r.attempt == t.attempt {
                futures += writeLogs(session, taskID: t.id, TaskLogs(stdout: r.stdoutTail, stderr: r.stderrTail))
            }
        }
        return futures
    }

    public func updateSpec(_ task: TaskRecord) throws {
        let spec = try Self.json(task.spec)
        try write("update task \(task.id)") { session in
            [session.send("UPDATE tasks SET name = \(task.spec.name), spec = \(spec), updated_at = \(task.updatedAt) WHERE id = \(task.id)")]
        }
    }

    private static let columns = "id, spec, state, reason, phase, attempt, assigned_proplet, stop_requested, created_at, updated_at, started_at, finished_at, result"

    private static func record(_ row: PostgresRow) throws -> TaskRecord {
        let (id, specText, stateText, reason, phase, attempt, proplet, stopRequested, createdAt, updatedAt, startedAt, finishedAt, resultText) =
            try row.decode((String, String, String, String?, String?, Int, String?, Bool, Double, Double, Double?, Double?, String?).self)
        var t = TaskRecord(id: id, spec: try value(TaskSpec.self, specText), createdAt: createdAt)
        t.status = TaskStatus(state: TaskState(rawValue: stateText) ?? .failed, proplet: proplet, phase: phase)
        t.reason = reason
        t.attempt = attempt
        t.stopRequested = stopRequested
        t.updatedAt = updatedAt
        t.startedAt = startedAt
        t.finishedAt = finishedAt
        t.result = try resultText.map { try value(TaskResult.self, $0) }
        return t
    }

    public func task(id: String) throws -> TaskRecord? {
        try read("read task \(id)") { session in
            try session.run("SELECT \(unescaped: Self.columns) FROM tasks WHERE id = \(id)").first { _ in true }.map(Self.record)
        }
    }

    public func history(taskID: String) throws -> [TaskTransition] {
        try read("read history of \(taskID)") { session in
            try session.run("SELECT state, attempt, at, reason FROM task_transitions WHERE task_id = \(taskID) ORDER BY seq").map { row in
                let (state, attempt, at, reason) = try row.decode((String, Int, Double, String?).self)
                return TaskTransition(taskId: taskID, state: TaskState(rawValue: state) ?? .failed, attempt: attempt, at: at, reason: reason)
            }
        }
    }

    public func tasks(offset: Int, limit: Int, state: TaskState?, namespace: String?) throws -> (total: Int, tasks: [TaskRecord]) {
        try read("list tasks") { session in
            // A task of `default` has no namespace in its spec (as every task from before).
            let total: Int
            let rows: PostgresQueryResult
            switch (state, namespace) {
            case (nil, nil):
                total = try Self.count(session.run("SELECT COUNT(*) FROM tasks"))
                rows = try session.run("SELECT \(unescaped: Self.columns) FROM tasks ORDER BY seq LIMIT \(limit) OFFSET \(offset)")
            case (let state?, nil):
                total = try Self.count(session.run("SELECT COUNT(*) FROM tasks WHERE state = \(state.rawValue)"))
                rows = try session.run("SELECT \(unescaped: Self.columns) FROM tasks WHERE state = \(state.rawValue) ORDER BY seq LIMIT \(limit) OFFSET \(offset)")
            case (nil, let namespace?):
                total = try Self.count(session.run("SELECT COUNT(*) FROM tasks WHERE COALESCE(spec::jsonb->>'namespace', 'default') = \(namespace)"))
                rows = try session.run("""
                    SELECT \(unescaped: Self.columns) FROM tasks WHERE COALESCE(spec::jsonb->>'namespace', 'default') = \(namespace)
                    ORDER BY seq LIMIT \(limit) OFFSET \(offset)
                    """)
            case (let state?, let namespace?):
                total = try Self.count(session.run("""
                    SELECT COUNT(*) FROM tasks WHERE state = \(state.rawValue) AND COALESCE(spec::jsonb->>'namespace', 'default') = \(namespace)
                    """))
                rows = try session.run("""
                    SELECT \(unescaped: Self.columns) FROM tasks WHERE state = \(state.rawValue) AND COALESCE(spec::jsonb->>'namespace', 'default') = \(namespace)
                    ORDER BY seq LIMIT \(limit) OFFSET \(offset)
                    """)
            }
            return (total, try rows.map(Self.record))
        }
    }

    static func count(_ result: PostgresQueryResult) throws -> Int {
        try result.first { _ in true }.map { try $0.decode(Int.self) } ?? 0
    }

    public func tasks(matching handle: String, namespace: String?, limit: Int) throws -> [TaskRecord] {
        try read("find tasks named \(handle)") { session in
            let rows: PostgresQueryResult
            if let namespace {
                rows = try session.run("""
                    SELECT \(unescaped: Self.columns) FROM tasks WHERE (name = \(handle) OR left(id, length(\(handle))) = \(handle))
                    AND COALESCE(spec::jsonb->>'namespace', 'default') = \(namespace) ORDER BY seq LIMIT \(limit)
                    """)
            } else {
                rows = try session.run("""
                    SELECT \(unescaped: Self.columns) FROM tasks WHERE (name = \(handle) OR left(id, length(\(handle))) = \(handle)) ORDER BY seq LIMIT \(limit)
                    """)
            }
            return try rows.map(Self.record)
        }
    }

    public func activeTasks() throws -> [TaskRecord] {
        try read("read active tasks") { session in
            try session.run("SELECT \(unescaped: Self.columns) FROM tasks WHERE state IN ('pending', 'scheduled', 'running', 'unknown') ORDER BY seq").map(Self.record)
        }
    }

    public func taskCounts() throws -> [TaskState: Int] {
        try read("count tasks") { session in
            var counts: [TaskState: Int] = [:]
            for row in try session.run("SELECT state, COUNT(*) FROM tasks GROUP BY state") {
                let (state, n) = try row.decode((String, Int).self)
                if let s = TaskState(rawValue: state) { counts[s] = n }
            }
            return counts
        }
    }

    public func deleteTask(id: String) throws {
        try write("delete task \(id)") { session in [session.send("DELETE FROM tasks WHERE id = \(id)")] }
    }

    public func saveProplet(_ proplet: PropletRecord) throws {
        try write("save proplet \(proplet.id)") { session in [try Self.save(proplet, session)] }
    }

    private static func save(_ proplet: PropletRecord, _ session: Session) throws -> EventLoopFuture<PostgresQueryResult> {
        var stored = proplet
        stored.allocated = nil
        stored.taskCount = nil
        let body = try json(stored)
        return session.send("INSERT INTO proplets (id, body) VALUES (\(proplet.id), \(body)) ON CONFLICT (id) DO UPDATE SET body = excluded.body")
    }

    public func proplets() throws -> [PropletRecord] {
        try read("read proplets") { session in
            try session.run("SELECT body FROM proplets ORDER BY id").map { try Self.value(PropletRecord.self, try $0.decode(String.self)) }
        }
    }

    public func deleteProplet(id: String) throws {
        try write("delete proplet \(id)") { session in [session.send("DELETE FROM proplets WHERE id = \(id)")] }
    }

    public func appendLog(taskID: String, stream: LogBlock.Stream, data: String, keep: Int) throws {
        let bytes = Data(data.utf8.suffix(keep))
        try write("append log of \(taskID)") { session in
            // The tail is cut in the database, in the same statement.
            [try session.send("""
                INSERT INTO task_logs (task_id, stream, data) VALUES (\(taskID), \(stream.rawValue), \(bytes))
                ON CONFLICT (task_id, stream) DO UPDATE SET data =
                    substring(task_logs.data || excluded.data FROM greatest(1, length(task_logs.data || excluded.data) - \(keep)::int + 1))
                """)]
        }
    }

    public func setLogs(taskID: String, logs: TaskLogs) throws {
        try write("store logs of \(taskID)") { session in Self.writeLogs(session, taskID: taskID, logs) }
    }

    private static func writeLogs(_ session: Session, taskID: String, _ logs: TaskLogs) -> [EventLoopFuture<PostgresQueryResult>] {
        [("stdout", logs.stdout), ("stderr", logs.stderr)].map { stream, text in
            let bytes = ByteBuffer(string: text)
            return session.send("""
                INSERT INTO task_logs (task_id, stream, data) VALUES (\(taskID), \(stream), \(bytes))
                ON CONFLICT (task_id, stream) DO UPDATE SET data = excluded.data
                """)
        }
    }

    public func logs(taskID: String) throws -> TaskLogs {
        try read("read logs of \(taskID)") { session in
            var logs = TaskLogs()
            for row in try session.run("SELECT stream, data FROM task_logs WHERE task_id = \(taskID)") {
                let (stream, data) = try row.decode((String, ByteBuffer).self)
                let text = String(buffer: data)
                if stream == "stdout" { logs.stdout = text } else { logs.stderr = text }
            }
            return logs
        }
    }
}
