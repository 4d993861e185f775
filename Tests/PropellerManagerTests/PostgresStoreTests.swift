import Foundation
import PropellerCore
@testable import PropellerManager
@testable import PropellerPostgres
import PropellerTestSupport
import Testing

/// What only the PostgreSQL store does: migrations shared by managers, the leadership lease and
/// its fence, and faults of the database server (a real PostgreSQL 15 on loopback).
@Suite("PostgreSQL store")
struct PostgresStoreTests {
    @Test func managersStartingTogetherMigrateTheSchemaOnce() async throws {
        let server = try PostgresServer()
        let url = try server.createDatabase("fresh")
        let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
            for _ in 0..<4 { group.addTask { try PostgresStore(url: url) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(stores.count == 4)
        let versions = try server.psql("SELECT version FROM schema_migrations ORDER BY version", database: "fresh")
        #expect(versions.stdout.split(separator: "\n") == ["v1", "v2-leadership", "v3-secrets", "v4-access", "v5-proplet-identities", "v6-task-namespace-index", "v7-audit-retention", "v8-proplet-identity-namespaces"])
        // Each store works on the shared tables.
        let t = storeTask("a")
        try stores[0].insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
        #expect(try stores[3].task(id: t.id)?.spec.name == "a")
    }

    @Test func aFailedWriteLeavesNothingBehind() throws {
        let server = try PostgresServer()
        let store = try PostgresStore(url: server.url())
        let t = storeTask("a")
        // The transition names a task that does not exist: the whole transaction is refused.
        #expect(throws: PropellerError.self) {
            try store.insertTask(t, transition: TaskTransition(taskId: "no-such-task", state: .created, attempt: 0, at: 0, reason: nil))
        }
        #expect(try store.task(id: t.id) == nil)
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
        #expect(try store.task(id: t.id) != nil, "the connection that failed was not reused in its aborted transaction")
    }

    /// Two managers contend for the lease: one leads; when it stops renewing, the other takes
    /// over under a higher epoch, and the deposed leader's writes are refused by the database.
    @Test func aDeposedLeadersWritesAreRefusedByTheDatabase() throws {
        let server = try PostgresServer()
        let storeA = try PostgresStore(url: server.url())
        let storeB = try PostgresStore(url: server.url())
        let a = PostgresLeadership(store: storeA, id: "manager-a", address: "http://127.0.0.1:1", duration: .milliseconds(800))
        let b = PostgresLeadership(store: storeB, id: "manager-b", address: "http://127.0.0.1:2", duration: .milliseconds(800))
        let epochA = try #require(try a.acquire(renewing: nil))
        #expect(try b.acquire(renewing: nil) == nil, "the lease is held")
        #expect(try a.acquire(renewing: epochA) == epochA, "renewal keeps the epoch")
        storeA.fence(epoch: epochA)
        var t = storeTask("fenced")
        try storeA.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
        #expect(try a.leader()?.id == "manager-a")

        usleep(1_000_000)  // a stops renewing (frozen, or cut off from the database)
        let epochB = try #require(try b.acquire(renewing: nil))
        #expect(epochB > epochA)
        storeB.fence(epoch: epochB)
        #expect(try a.acquire(renewing: epochA) == nil, "the old leader cannot renew a lease another took")
        #expect(try a.acquire(renewing: nil) == nil, "nor take it back while b holds it")

        t.status = .failed(on: nil)
        t.reason = "a late decision of the old leader"
        #expect {
            try storeA.saveTasks([t], transitions: [TaskTransition(taskId: t.id, state: .failed, attempt: 0, at: 1, reason: nil)])
        } throws: { error in
            (error as? PropellerError)?.message.contains("no longer leads") == true
        }
        #expect(try storeB.task(id: t.id)?.state == .created, "nothing of the refused write landed")
        #expect(try storeB.history(taskID: t.id).count == 1)
        // The new leader writes; a clean shutdown hands the lease on at once, under a new epoch.
        t.reason = nil
        t.status = .pending
        try storeB.saveTasks([t], transitions: [])
        try b.release(epoch: epochB)
        let epochA2 = try #require(try a.acquire(renewing: nil))
        #expect(epochA2 > epochB)
        #expect(try a.leader()?.address == "http://127.0.0.1:1")
        #expect(try a.acquire(renewing: nil)! > epochA2, "taking it again, even from itself, starts a new epoch")
        try a.announce()
        try b.announce()
        #expect(Set(try a.members(within: .seconds(60)).map(\.id)) == ["manager-a", "manager-b"])
    }

    @Test func badCredentialsAndAnAbsentServerAreClearErrorsWithoutThePassword() throws {
        let server = try PostgresServer()
        let wrong = "postgres://propeller:not-the-password@127.0.0.1:\(server.port)/postgres?sslmode=disable"
        #expect {
            _ = try PostgresStore(url: wrong)
        } throws: { error in
            let text = "\(error)"
            return text.contains("postgres://propeller@127.0.0.1:\(server.port)/postgres") && text.contains("password") && !text.contains("not-the-password")
        }
        let port = try freeLoopbackPort()
        #expect {
            _ = try PostgresStore(url: "postgres://propeller:secret@127.0.0.1:\(port)/postgres?sslmode=disable")
        } throws: { error in
            "\(error)".contains("127.0.0.1:\(port)") && !"\(error)".contains("secret")
        }
        for bad in ["mysql://u@h/db", "postgres://h/db", "postgres://u@h/", "postgres://u@h/db?sslmode=maybe", "postgres://u@h/db?x=1"] {
            #expect(throws: PropellerError.self, "\(bad)") { _ = try PostgresLocation(url: bad) }
        }
    }

    /// The database restarts (a crash, then recovery): calls fail while it is away, with the
    /// reason, and the store goes on on new connections once it is back; nothing committed is lost.
    @Test func theStoreGoesOnAfterTheDatabaseCrashesAndComesBack() throws {
        let server = try PostgresServer()
        let store = try PostgresStore(url: server.url(), timeout: .seconds(3))
        let t = storeTask("kept")
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
        server.crash()
        #expect(throws: PropellerError.self) { _ = try store.task(id: t.id) }
        #expect(throws: PropellerError.self) { try store.deleteTask(id: t.id) }
        try server.start()
        #expect(try store.task(id: t.id)?.spec.name == "kept")
        try store.saveTasks([t], transitions: [TaskTransition(taskId: t.id, state: .pending, attempt: 0, at: 1, reason: nil)])
        #expect(try store.history(taskID: t.id).count == 2)
    }
}
