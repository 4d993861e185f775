import Foundation
import GRDB
import PropellerCore

/// ``ManagerStore`` on one SQLite file (WAL mode, so API reads never wait for the scheduler's
/// writes). Mutable status lives in columns; the immutable spec and the result are JSON.
public final class SQLiteStore: ManagerStore {
    let pool: DatabasePool
    public let path: String

    /// Opens (creating when missing) the database at `path` and brings its schema up to date.
    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(pool)
        } catch {
            throw PropellerError(.systemCall, "store \(path): \(error)")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
            CREATE TABLE tasks (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT,
                phase TEXT,
                attempt INTEGER NOT NULL,
                assigned_proplet TEXT,
                stop_requested INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                started_at REAL,
                finished_at REAL,
                result TEXT
            );
            CREATE INDEX tasks_state ON tasks(state, seq);
            CREATE TABLE task_transitions (
                task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
                state TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                at REAL NOT NULL,
                reason TEXT
            );
            CREATE INDEX task_transitions_task ON task_transitions(task_id);
            CREATE TABLE task_logs (
                task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
                stream TEXT NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (task_id, stream)
            );
            CREATE TABLE proplets (
                id TEXT PRIMARY KEY,
                body TEXT NOT NULL
            );
            """)
        }
        m.registerMigration("v2-api-tokens") { db in
            try db.execute(sql: """
            CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL UNIQUE,
                created_at REAL NOT NULL,
                revoked_at REAL
            );
            """)
        }
        registerActorMigration(&m)
        registerSecretMigration(&m)
        registerAccessMigration(&m)
        registerPropletIdentityMigration(&m)
        registerRetentionMigration(&m)
        registerIdentityNamespacesMigration(&m)
        return m
    }

    private static let encoder = WireCoding.encoder()
    private static let decoder = WireCoding.decoder()

    private static func json<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PropellerError {
            throw error
        } catch {
            throw PropellerError(.systemCall, "store \(path): \(what): \(error)")
        }
    }

    public func insertTasks(_ tasks: [TaskRecord], transitions: [TaskTransition]) throws {
        try wrap("insert \(tasks.count) tasks") {
            try pool.write { db in
                try Self.insert(tasks, db)
                for t in transitions { try Self.insert(t, db) }
            }
        }
    }

    public func commit(_ batch: StoreBatch) throws {
        guard !batch.isEmpty else { return }
        try wrap("write \(batch.count) changes") {
            try pool.write { db in
                try Self.insert(batch.newTasks, db)
                try Self.update(batch.tasks, db)
                for t in batch.transitions { try Self.insert(t, db) }
                for p in batch.proplets { try Self.save(p, db) }
                for w in batch.actorWrites { try Self.write(w, db) }
            }
        }
    }

    private static func insert(_ tasks: [TaskRecord], _ db: Database) throws {
        guard !tasks.isEmpty else { return }
        let insert = try db.cachedStatement(sql: """
            INSERT INTO tasks (id, name, spec, state, reason, phase, attempt, assigned_proplet, stop_requested, created_at, updated_at, started_at, finished_at, result)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for task in tasks {
            try insert.execute(arguments: [task.id, task.spec.name, try json(task.spec)] + statusArguments(task))
        }
    }

    private static func statusArguments(_ t: TaskRecord) throws -> StatementArguments {
        [t.state.rawValue, t.reason, t.phase, t.attempt, t.assignedProplet, t.stopRequested, t.createdAt, t.updatedAt, t.startedAt, t.finishedAt,
         try t.result.map { try json($0) }]
    }

    private static func insert(_ t: TaskTransition, _ db: Database) throws {
        let statement = try db.cachedStatement(sql: "INSERT INTO task_transitions (task_id, state, attempt, at, reason) VALUES (?, ?, ?, ?, ?)")
        try statement.execute(arguments: [t.taskId, t.state.rawValue, t.attempt, t.at, t.reason])
    }

    public func saveTasks(_ tasks: [TaskRecord], transitions: [TaskTransition]) throws {
        if tasks.isEmpty && transitions.isEmpty { return }
        try wrap("save \(tasks.count) tasks") {
            try pool.write { db in
                try Self.update(tasks, db)
                for t in transitions { try Self.insert(t, db) }
            }
        }
    }

    private static func update(_ tasks: [TaskRecord], _ db: Database) throws {
        guard !tasks.isEmpty else { return }
        let update = try db.cachedStatement(sql: """
            UPDATE tasks SET state = ?, reason = ?, phase = ?, attempt = ?, assigned_proplet = ?, stop_requested = ?, created_at = ?,
            updated_at = ?, started_at = ?, finished_at = ?, result = ? WHERE id = ?
            """)
        for t in tasks {
            var arguments = try statusArguments(t)
            arguments += [t.id]
            try update.execute(arguments: arguments)
            // A final result carries the authoritative output tails.
            if let r = t.result, t.state.isTerminal, r.attempt == t.attempt {
                try writeLogs(db, taskID: t.id, TaskLogs(stdout: r.stdoutTail, stderr: r.stderrTail))
            }
        }
    }

    public func updateSpec(_ task: TaskRecord) throws {
        try wrap("update task \(task.id)") {
            try pool.write { db in
                try db.execute(sql: "UPDATE tasks SET name = ?, spec = ?, updated_at = ? WHERE id = ?",
                               arguments: [task.spec.name, try Self.json(task.spec), task.updatedAt, task.id])
            }
        }
    }

    private static let columns = "id, spec, state, reason, phase, attempt, assigned_proplet, stop_requested, created_at, updated_at, started_at, finished_at, result"

    private static func record(_ row: Row) throws -> TaskRecord {
        let specText: String = row["spec"]
        let spec = try decoder.decode(TaskSpec.self, from: Data(specText.utf8))
        var t = TaskRecord(id: row["id"], spec: spec, createdAt: row["created_at"])
        let stateText: String = row["state"]
        t.status = TaskStatus(state: TaskState(rawValue: stateText) ?? .failed, proplet: row["assigned_proplet"], phase: row["phase"])
        t.reason = row["reason"]
        t.attempt = row["attempt"]
        t.stopRequested = row["stop_requested"]
        t.updatedAt = row["updated_at"]
        t.startedAt = row["started_at"]
        t.finishedAt = row["finished_at"]
        if let resultText: String = row["result"] {
            t.result = try decoder.decode(TaskResult.self, from: Data(resultText.utf8))
        }
        return t
    }

    public func task(id: String) throws -> TaskRecord? {
        try wrap("read task \(id)") {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT \(Self.columns) FROM tasks WHERE id = ?", arguments: [id]).map(Self.record)
            }
        }
    }

    public func history(taskID: String) throws -> [TaskTransition] {
        try wrap("read history of \(taskID)") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT state, attempt, at, reason FROM task_transitions WHERE task_id = ? ORDER BY rowid", arguments: [taskID]).map { row in
                    let state: String = row["state"]
                    return TaskTransition(taskId: taskID, state: TaskState(rawValue: state) ?? .failed, attempt: row["attempt"], at: row["at"], reason: row["reason"])
                }
            }
        }
    }

    public func tasks(offset: Int, limit: Int, state: TaskState?, namespace: String?) throws -> (total: Int, tasks: [TaskRecord]) {
        try wrap("list tasks") {
            try pool.read { db in
                // A task of `default` has no namespace in its spec (as every task from before).
                var conditions: [String] = []
                var args: StatementArguments = []
                if let state {
                    conditions.append("state = ?")
                    args += [state.rawValue]
                }
                if let namespace {
                    conditions.append("COALESCE(json_extract(spec, '$.namespace'), 'default') = ?")
                    args += [namespace]
                }
                let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
                let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM tasks \(filter)", arguments: args) ?? 0
                let rows = try Row.fetchAll(db, sql: "SELECT \(Self.columns) FROM tasks \(filter) ORDER BY seq LIMIT ? OFFSET ?", arguments: args + [limit, offset])
                return (total, try rows.map(Self.record))
            }
        }
    }

    public func tasks(matching handle: String, namespace: String?, limit: Int) throws -> [TaskRecord] {
        try wrap("find tasks named \(handle)") {
            try pool.read { db in
                var sql = "SELECT \(Self.columns) FROM tasks WHERE (name = ? OR substr(id, 1, length(?)) = ?)"
                var args: StatementArguments = [handle, handle, handle]
                if let namespace {
                    sql += " AND COALESCE(json_extract(spec, '$.namespace'), 'default') = ?"
                    args += [namespace]
                }
                return try Row.fetchAll(db, sql: sql + " ORDER BY seq LIMIT ?", arguments: args + [limit]).map(Self.record)
            }
        }
    }

    public func activeTasks() throws -> [TaskRecord] {
        try wrap("read active tasks") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT \(Self.columns) FROM tasks WHERE state IN ('pending', 'scheduled', 'running', 'unknown') ORDER BY seq").map(Self.record)
            }
        }
    }

    public func taskCounts() throws -> [TaskState: Int] {
        try wrap("count tasks") {
            try pool.read { db in
                var counts: [TaskState: Int] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM tasks GROUP BY state") {
                    let state: String = row["state"]
                    if let s = TaskState(rawValue: state) { counts[s] = row["n"] }
                }
                return counts
            }
        }
    }

    public func deleteTask(id: String) throws {
        try wrap("delete task \(id)") {
            try pool.write { db in try db.execute(sql: "DELETE FROM tasks WHERE id = ?", arguments: [id]) }
        }
    }

    public func saveProplet(_ proplet: PropletRecord) throws {
        try wrap("save proplet \(proplet.id)") {
            try pool.write { db in try Self.save(proplet, db) }
        }
    }

    private static func save(_ proplet: PropletRecord, _ db: Database) throws {
        var stored = proplet
        stored.allocated = nil
        stored.taskCount = nil
        try db.execute(sql: "INSERT INTO proplets (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body", arguments: [proplet.id, try json(stored)])
    }

    public func proplets() throws -> [PropletRecord] {
        try wrap("read proplets") {
            try pool.read { db in
                try String.fetchAll(db, sql: "SELECT body FROM proplets ORDER BY id").map { try Self.decoder.decode(PropletRecord.self, from: Data($0.utf8)) }
            }
        }
    }

    public func deleteProplet(id: String) throws {
        try wrap("delete proplet \(id)") {
            try pool.write { db in try db.execute(sql: "DELETE FROM proplets WHERE id = ?", arguments: [id]) }
        }
    }

    public func appendLog(taskID: String, stream: LogBlock.Stream, data: String, keep: Int) throws {
        try wrap("append log of \(taskID)") {
            try pool.write { db in
                let existing = try Data.fetchOne(db, sql: "SELECT data FROM task_logs WHERE task_id = ? AND stream = ?", arguments: [taskID, stream.rawValue]) ?? Data()
                var combined = existing
                combined.append(contentsOf: Array(data.utf8))
                if combined.count > keep { combined = combined.suffix(keep) }
                try db.execute(sql: "INSERT INTO task_logs (task_id, stream, data) VALUES (?, ?, ?) ON CONFLICT(task_id, stream) DO UPDATE SET data = excluded.data",
                               arguments: [taskID, stream.rawValue, combined])
            }
        }
    }

    public func setLogs(taskID: String, logs: TaskLogs) throws {
        try wrap("store logs of \(taskID)") {
            try pool.write { db in try Self.writeLogs(db, taskID: taskID, logs) }
        }
    }

    private static func writeLogs(_ db: Database, taskID: String, _ logs: TaskLogs) throws {
        let statement = try db.cachedStatement(sql: "INSERT INTO task_logs (task_id, stream, data) VALUES (?, ?, ?) ON CONFLICT(task_id, stream) DO UPDATE SET data = excluded.data")
        for (stream, text) in [("stdout", logs.stdout), ("stderr", logs.stderr)] {
            try statement.execute(arguments: [taskID, stream, Data(text.utf8)])
        }
    }

    public func logs(taskID: String) throws -> TaskLogs {
        try wrap("read logs of \(taskID)") {
            try pool.read { db in
                var logs = TaskLogs()
                for row in try Row.fetchAll(db, sql: "SELECT stream, data FROM task_logs WHERE task_id = ?", arguments: [taskID]) {
                    let stream: String = row["stream"]
                    let data: Data = row["data"]
                    let text = String(decoding: data, as: UTF8.self)
                    if stream == "stdout" { logs.stdout = text } else { logs.stderr = text }
                }
                return logs
            }
        }
    }
}
