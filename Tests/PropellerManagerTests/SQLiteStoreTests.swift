import Foundation
import GRDB
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

@Suite("SQLite store")
final class SQLiteStoreTests: Sendable {
    let dir: TempDirectory
    init() throws { dir = try TempDirectory("propeller-store") }
    deinit { dir.remove() }  // each test has its own instance and directory

    /// WAL mode, as documented: API reads never wait for the scheduler's writes. (What every
    /// store must do is in StoreContractTests.)
    @Test func theDatabaseIsInWALMode() throws {
        let path = dir.path + "/manager.db"
        let store = try SQLiteStore(path: path)
        let t = storeTask("one")
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 1000, reason: nil))
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    /// A namespace's page of tasks is found through its index, in order, without reading every
    /// task's spec (the query the store runs, as SQLite plans it).
    @Test func aNamespacesTasksAreListedThroughTheirIndex() throws {
        let store = try SQLiteStore(path: dir.path + "/manager.db")
        let plan = try store.pool.read { db in
            try Row.fetchAll(db, sql: """
                EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE COALESCE(json_extract(spec, '$.namespace'), 'default') = 'team-a' ORDER BY seq LIMIT 10
                """).map { $0["detail"] as String? ?? "" }.joined(separator: " ")
        }
        #expect(plan.contains("tasks_namespace") && !plan.contains("TEMP B-TREE"), "\(plan)")
        var t = storeTask("theirs")
        t.spec.namespace = "team-a"
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 1000, reason: nil))
        let ours = storeTask("ours")
        try store.insertTask(ours, transition: TaskTransition(taskId: ours.id, state: .created, attempt: 0, at: 1000, reason: nil))
        #expect(try store.tasks(offset: 0, limit: 10, state: nil, namespace: "team-a").tasks.map(\.spec.name) == ["theirs"])
    }

    @Test func aCorruptFileIsAClearError() throws {
        let path = dir.path + "/bad.db"
        try Data("this is not a database, just text that is long enough to have a header".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: PropellerError.self) { try SQLiteStore(path: path) }
    }
}
