import Foundation
import GRDB
import PropellerCore

/// Where actors, their inboxes, executions, workers and states live. The inbox is durable: a
/// message stays in it until its execution is final, so a restarted manager runs it again.
public protocol ActorStore: Sendable {
    func saveActor(_ actor: ActorRecord) throws
    /// Removes an actor with everything it owns (inbox, executions, workers, state).
    func deleteActor(id: String) throws
    func actors() throws -> [ActorRecord]

    /// Adds a message to the inbox with its execution, in one transaction.
    func enqueue(_ execution: ExecutionRecord, message: InboxMessage) throws
    func saveExecution(_ execution: ExecutionRecord) throws
    /// Stores a final execution with its output, and takes its message out of the inbox.
    func finishExecution(_ execution: ExecutionRecord, logs: TaskLogs, results: Data) throws
    /// Every message still in an inbox, oldest first.
    func inbox() throws -> [(execution: ExecutionRecord, message: InboxMessage)]
    func message(executionID: String) throws -> InboxMessage?
    func execution(id: String) throws -> ExecutionRecord?
    /// One actor's executions, newest first, and how many there are.
    func executions(actorID: String, offset: Int, limit: Int) throws -> (total: Int, executions: [ExecutionRecord])
    func executionTotals(actorID: String) throws -> ExecutionTotals
    func executionLogs(id: String) throws -> TaskLogs?
    func executionResults(id: String) throws -> Data?

    func saveWorker(_ worker: WorkerRecord) throws
    func deleteWorker(id: String) throws
    func workers() throws -> [WorkerRecord]

    func actorState(actorID: String) throws -> String?
    func setActorState(actorID: String, state: String) throws
}

extension SQLiteStore {
    static func registerActorMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v3-actors") { db in
            try db.execute(sql: """
            CREATE TABLE actors (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL,
                state TEXT
            );
            CREATE TABLE actor_executions (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                status TEXT NOT NULL,
                runtime REAL,
                cpu_usec INTEGER,
                memory_peak INTEGER,
                body TEXT NOT NULL,
                stdout BLOB,
                stderr BLOB,
                results BLOB
            );
            CREATE INDEX actor_executions_actor ON actor_executions(actor_id, seq);
            CREATE TABLE actor_inbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                execution_id TEXT NOT NULL UNIQUE REFERENCES actor_executions(id) ON DELETE CASCADE,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                content_type TEXT NOT NULL,
                body BLOB NOT NULL
            );
            CREATE TABLE actor_workers (
                id TEXT PRIMARY KEY,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                body TEXT NOT NULL
            );
            """)
        }
    }

    private static let actorEncoder = WireCoding.encoder()
    private static let actorDecoder = WireCoding.decoder()

    private static func text<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try actorEncoder.encode(value), as: UTF8.self)
    }

    private static func value<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try actorDecoder.decode(type, from: Data(text.utf8))
    }

    public func saveActor(_ actor: ActorRecord) throws {
        try wrap("save actor \(actor.id)") {
            try pool.write { db in try Self.write(.saveActor(actor), db) }
        }
    }

    /// One write of the actor layer, inside the caller's transaction.
    static func write(_ w: ActorStoreWrite, _ db: Database) throws {
        func actorExists(_ id: String) throws -> Bool { try Bool.fetchOne(db, sql: "SELECT 1 FROM actors WHERE id = ?", arguments: [id]) == true }
        switch w {
        case .saveActor(let actor):
            try db.execute(sql: "INSERT INTO actors (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                           arguments: [actor.id, try text(actor)])
        case .setActorState(let id, let state):
            try db.execute(sql: "UPDATE actors SET state = ? WHERE id = ?", arguments: [state, id])
        case .saveWorker(let worker):
            // A worker of a deleted actor is not brought back.
            guard try actorExists(worker.actorId) else { return }
            try db.cachedStatement(sql: "INSERT INTO actor_workers (id, actor_id, body) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body")
                .execute(arguments: [worker.id, worker.actorId, try text(worker)])
        case .deleteWorker(let id):
            try db.execute(sql: "DELETE FROM actor_workers WHERE id = ?", arguments: [id])
        case .saveExecution(let execution):
            // An execution of a deleted actor is not brought back.
            guard try actorExists(execution.actorId) else { return }
            try upsert(execution, db)
        case .finishExecution(let execution, let logs, let results):
            guard try actorExists(execution.actorId) else { return }
            try upsert(execution, db)
            try db.cachedStatement(sql: "UPDATE actor_executions SET stdout = ?, stderr = ?, results = ? WHERE id = ?")
                .execute(arguments: [Data(logs.stdout.utf8), Data(logs.stderr.utf8), results, execution.id])
            try db.cachedStatement(sql: "DELETE FROM actor_inbox WHERE execution_id = ?").execute(arguments: [execution.id])
        }
    }

    public func deleteActor(id: String) throws {
        try wrap("delete actor \(id)") {
            try pool.write { db in try db.execute(sql: "DELETE FROM actors WHERE id = ?", arguments: [id]) }
        }
    }

    public func actors() throws -> [ActorRecord] {
        try wrap("read actors") {
            try pool.read { db in
                try String.fetchAll(db, sql: "SELECT body FROM actors ORDER BY seq").map { try Self.value(ActorRecord.self, $0) }
            }
        }
    }

    private static func upsert(_ e: ExecutionRecord, _ db: Database) throws {
        let statement = try db.cachedStatement(sql: """
            INSERT INTO actor_executions (id, actor_id, status, runtime, cpu_usec, memory_peak, body) VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET status = excluded.status, runtime = excluded.runtime, cpu_usec = excluded.cpu_usec,
                memory_peak = excluded.memory_peak, body = excluded.body
            """)
        try statement.execute(arguments: [e.id, e.actorId, e.status.rawValue, e.runtime, e.cpuUsec.map { Int64(clamping: $0) },
                                          e.memoryPeakBytes.map { Int64(clamping: $0) }, try text(e)])
    }

    public func enqueue(_ execution: ExecutionRecord, message: InboxMessage) throws {
        try wrap("enqueue a message for actor \(execution.actorId)") {
            try pool.write { db in
                try Self.upsert(execution, db)
                try db.cachedStatement(sql: "INSERT INTO actor_inbox (execution_id, actor_id, content_type, body) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [message.executionID, message.actorID, message.contentType, message.body])
            }
        }
    }

    public func saveExecution(_ execution: ExecutionRecord) throws {
        try wrap("save execution \(execution.id)") {
            try pool.write { db in try Self.write(.saveExecution(execution), db) }
        }
    }

    public func finishExecution(_ execution: ExecutionRecord, logs: TaskLogs, results: Data) throws {
        try wrap("finish execution \(execution.id)") {
            try pool.write { db in try Self.write(.finishExecution(execution, logs, results), db) }
        }
    }

    public func inbox() throws -> [(execution: ExecutionRecord, message: InboxMessage)] {
        try wrap("read the inboxes") {
            try pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT e.body AS execution, i.execution_id, i.actor_id, i.content_type, i.body FROM actor_inbox i
                    JOIN actor_executions e ON e.id = i.execution_id ORDER BY i.seq
                    """).map { row in
                    (try Self.value(ExecutionRecord.self, row["execution"]),
                     InboxMessage(executionID: row["execution_id"], actorID: row["actor_id"], body: row["body"], contentType: row["content_type"]))
                }
            }
        }
    }

    public func message(executionID: String) throws -> InboxMessage? {
        try wrap("read the message of execution \(executionID)") {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT actor_id, content_type, body FROM actor_inbox WHERE execution_id = ?", arguments: [executionID]).map { row in
                    InboxMessage(executionID: executionID, actorID: row["actor_id"], body: row["body"], contentType: row["content_type"])
                }
            }
        }
    }

    public func execution(id: String) throws -> ExecutionRecord? {
        try wrap("read execution \(id)") {
            try pool.read { db in
                try String.fetchOne(db, sql: "SELECT body FROM actor_executions WHERE id = ?", arguments: [id]).map { try Self.value(ExecutionRecord.self, $0) }
            }
        }
    }

    public func executions(actorID: String, offset: Int, limit: Int) throws -> (total: Int, executions: [ExecutionRecord]) {
        try wrap("read the executions of actor \(actorID)") {
            try pool.read { db in
                let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM actor_executions WHERE actor_id = ?", arguments: [actorID]) ?? 0
                let list = try String.fetchAll(db, sql: "SELECT body FROM actor_executions WHERE actor_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
                                               arguments: [actorID, limit, offset]).map { try Self.value(ExecutionRecord.self, $0) }
                return (total, list)
            }
        }
    }

    public func executionTotals(actorID: String) throws -> ExecutionTotals {
        try wrap("sum the executions of actor \(actorID)") {
            try pool.read { db in
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT COUNT(*) AS n, SUM(status = 'complete') AS complete, SUM(status = 'error') AS error,
                           TOTAL(runtime) AS runtime, TOTAL(cpu_usec) AS cpu, MAX(memory_peak) AS memory
                    FROM actor_executions WHERE actor_id = ?
                    """, arguments: [actorID]) else { return ExecutionTotals() }
                let cpu: Double = row["cpu"] ?? 0
                let memory: Int64 = row["memory"] ?? 0
                return ExecutionTotals(count: row["n"] ?? 0, complete: row["complete"] ?? 0, error: row["error"] ?? 0, runtime: row["runtime"] ?? 0,
                                       cpuUsec: UInt64(max(0, cpu)), memoryPeakBytes: UInt64(max(0, memory)))
            }
        }
    }

    public func executionLogs(id: String) throws -> TaskLogs? {
        try wrap("read the logs of execution \(id)") {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT stdout, stderr FROM actor_executions WHERE id = ?", arguments: [id]).map { row in
                    let out: Data? = row["stdout"]
                    let err: Data? = row["stderr"]
                    return TaskLogs(stdout: String(decoding: out ?? Data(), as: UTF8.self), stderr: String(decoding: err ?? Data(), as: UTF8.self))
                }
            }
        }
    }

    public func executionResults(id: String) throws -> Data? {
        try wrap("read the results of execution \(id)") {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT results FROM actor_executions WHERE id = ?", arguments: [id]).map { row in
                    let data: Data? = row["results"]
                    return data ?? Data()
                }
            }
        }
    }

    public func saveWorker(_ worker: WorkerRecord) throws {
        try wrap("save worker \(worker.id)") {
            try pool.write { db in try Self.write(.saveWorker(worker), db) }
        }
    }

    public func deleteWorker(id: String) throws {
        try wrap("delete worker \(id)") {
            try pool.write { db in try Self.write(.deleteWorker(id), db) }
        }
    }

    public func workers() throws -> [WorkerRecord] {
        try wrap("read workers") {
            try pool.read { db in
                try String.fetchAll(db, sql: "SELECT body FROM actor_workers").map { try Self.value(WorkerRecord.self, $0) }
            }
        }
    }

    public func actorState(actorID: String) throws -> String? {
        try wrap("read the state of actor \(actorID)") {
            try pool.read { db in try String.fetchOne(db, sql: "SELECT state FROM actors WHERE id = ?", arguments: [actorID]) }
        }
    }

    public func setActorState(actorID: String, state: String) throws {
        try wrap("save the state of actor \(actorID)") {
            try pool.write { db in try Self.write(.setActorState(actor: actorID, state: state), db) }
        }
    }
}
