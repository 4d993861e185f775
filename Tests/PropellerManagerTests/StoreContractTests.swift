import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerPostgres
import PropellerTestSupport
import Testing

/// The two stores behind the manager's store contract.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }
}

/// A store of one kind in a place of its own (a temp file, or a fresh PostgreSQL server), which
/// can be opened again as a restarted manager would.
final class StoreUnderTest: @unchecked Sendable {
    let kind: StoreKind
    let dir: TempDirectory
    let server: PostgresServer?
    private(set) var store: any ManagerStores

    init(_ kind: StoreKind) throws {
        self.kind = kind
        dir = try TempDirectory("propeller-store")
        server = kind == .postgres ? try PostgresServer() : nil
        store = try Self.open(kind, dir: dir, server: server)
    }

    private static func open(_ kind: StoreKind, dir: TempDirectory, server: PostgresServer?) throws -> any ManagerStores {
        switch kind {
        case .sqlite: return try SQLiteStore(path: dir.path + "/manager.db")
        case .postgres: return try PostgresStore(url: try #require(server).url())
        }
    }

    /// A second store on the same data (the first is dropped), as after a manager restart.
    func reopen() throws -> any ManagerStores {
        store = try Self.open(kind, dir: dir, server: server)
        return store
    }

    deinit { dir.remove() }
}

func storeTask(_ name: String, at time: Double = 1000) -> TaskRecord {
    TaskRecord(id: UUID().uuidString.lowercased(), spec: TaskSpec(name: name, image: "127.0.0.1:5000/app:v1", command: ["echo", "hi"],
                                                                  env: ["A": "1"], resources: Resources(cpuMillis: 500, memoryBytes: 64 << 20)), createdAt: time)
}

/// What the manager relies on from its store, checked on SQLite and on a real PostgreSQL 15.
@Suite("Store contract")
struct StoreContractTests {
    @Test(arguments: StoreKind.allCases)
    func everythingSurvivesReopening(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        var t = storeTask("one")
        try s.store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 1000, reason: nil))
        t.status = .running(on: "p1", phase: "running")
        t.attempt = 1
        t.stopRequested = true
        t.startedAt = 1001.5
        t.result = TaskResult(taskId: t.id, attempt: 1, propletId: "p1", state: .completed, exitCode: 0, stdoutTail: "out")
        try s.store.saveTasks([t], transitions: [TaskTransition(taskId: t.id, state: .running, attempt: 1, at: 1001, reason: "go")])
        try s.store.appendLog(taskID: t.id, stream: .stdout, data: "hello ", keep: 1024)
        var p = PropletRecord(announcement: PropletAnnouncement(propletId: "p1", name: "n", version: "v", labels: ["k": "v"],
                                                               capacity: Capacity(cpuMillis: 1000, memoryBytes: 1 << 30, pids: 100, tasks: 4),
                                                               os: "linux", arch: "amd64", cgroupMode: "v1"), now: 1000)
        p.alive = false
        try s.store.saveProplet(p)
        var spec = t.spec
        spec.env["B"] = "2"
        t.spec = spec
        t.updatedAt = 1002
        try s.store.updateSpec(t)

        let store = try s.reopen()
        let loaded = try #require(try store.task(id: t.id))
        #expect(loaded == t)
        #expect(try store.history(taskID: t.id).map(\.state) == [.created, .running])
        #expect(try store.history(taskID: t.id).last?.reason == "go")
        #expect(try store.activeTasks().map(\.id) == [t.id])
        #expect(try store.logs(taskID: t.id).stdout == "hello ")
        let proplets = try store.proplets()
        #expect(proplets.count == 1 && proplets[0].alive == false && proplets[0].labels == ["k": "v"])
        try store.deleteProplet(id: "p1")
        #expect(try store.proplets().isEmpty)
        #expect(try store.task(id: "no-such-task") == nil)
    }

    @Test(arguments: StoreKind.allCases)
    func listingPagesInCreationOrderAndFiltersByState(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        defer { withExtendedLifetime(s) {} }
        let store = s.store
        var ids: [String] = []
        var all: [TaskRecord] = []
        for i in 0..<5 { all.append(storeTask("t\(i)", at: Double(i))) }
        try store.insertTasks(all, transitions: all.map { TaskTransition(taskId: $0.id, state: .created, attempt: 0, at: 0, reason: nil) })
        for (i, var t) in all.enumerated() {
            if i % 2 == 0 {
                t.status = .completed(on: nil)
                try store.saveTasks([t], transitions: [])
            }
            ids.append(t.id)
        }
        let page = try store.tasks(offset: 1, limit: 2, state: nil)
        #expect(page.total == 5)
        #expect(page.tasks.map(\.id) == Array(ids[1...2]))
        #expect(try store.tasks(offset: 0, limit: 10, state: .completed).total == 3)
        #expect(try store.tasks(offset: 1, limit: 10, state: .completed).tasks.map(\.id) == [ids[2], ids[4]])
        #expect(try store.taskCounts() == [.completed: 3, .created: 2])
        try store.deleteTask(id: ids[0])
        #expect(try store.task(id: ids[0]) == nil)
        #expect(try store.history(taskID: ids[0]).isEmpty)
    }

    @Test(arguments: StoreKind.allCases)
    func logsKeepOnlyTheTailAndAFinalResultReplacesThem(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        defer { withExtendedLifetime(s) {} }
        let store = s.store
        var t = storeTask("logs")
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
        for i in 0..<10 { try store.appendLog(taskID: t.id, stream: .stderr, data: "line \(i)\n", keep: 14) }
        try store.appendLog(taskID: t.id, stream: .stdout, data: "0123456789abcdef", keep: 4)
        #expect(try store.logs(taskID: t.id).stderr == "line 8\nline 9\n")
        #expect(try store.logs(taskID: t.id).stdout == "cdef")
        // The final result's tails are authoritative (streamed blocks may have gaps).
        t.attempt = 1
        t.status = .failed(on: "p1")
        t.result = TaskResult(taskId: t.id, attempt: 1, propletId: "p1", state: .failed, exitCode: 3, stdoutTail: "all of out\n", stderrTail: "all of err\n")
        try store.saveTasks([t], transitions: [TaskTransition(taskId: t.id, state: .failed, attempt: 1, at: 2, reason: "exit 3")])
        #expect(try store.logs(taskID: t.id) == TaskLogs(stdout: "all of out\n", stderr: "all of err\n"))
        try store.setLogs(taskID: t.id, logs: TaskLogs(stdout: "é ünïcode ✓", stderr: ""))
        #expect(try store.logs(taskID: t.id).stdout == "é ünïcode ✓")
    }

    /// A batch (the manager's group commit) writes everything it holds in one transaction, as
    /// the single writes would: new tasks with their transitions, changes, a final result's
    /// output (bytes that are not text included), proplets, the actor layer's writes in order;
    /// and a batch the store refuses leaves nothing of itself.
    @Test(arguments: StoreKind.allCases)
    func aBatchWritesAllOfItselfOrNothing(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        var kept = storeTask("kept")
        try s.store.insertTask(kept, transition: TaskTransition(taskId: kept.id, state: .created, attempt: 0, at: 1000, reason: nil))
        var fresh = [storeTask("a", at: 1001), storeTask("b", at: 1002)]
        fresh[1].reason = "quote ' and \\ backslash, ünïcode"
        kept.status = .completed(on: "p1")
        kept.attempt = 1
        kept.finishedAt = 1003.25
        let output = "line\u{0}with a NUL, \u{1F680}\n"
        kept.result = TaskResult(taskId: kept.id, attempt: 1, propletId: "p1", state: .completed, exitCode: 0, stdoutTail: output, stderrTail: "e")
        let p = PropletRecord(announcement: PropletAnnouncement(propletId: "p1", name: "n", version: "v", labels: [:],
                                                               capacity: Capacity(cpuMillis: 1000, memoryBytes: 1 << 30, pids: 100, tasks: 4),
                                                               os: "linux", arch: "amd64", cgroupMode: "v1"), now: 1000)
        let a = ActorRecord(id: "a1", spec: ActorSpec(name: "echo", image: "r/echo"), createdAt: 1, updatedAt: 1)
        try s.store.saveActor(a)
        var w = WorkerRecord(id: "w1", actorId: a.id, revision: 1, createdAt: 1)
        w.state = .ready(on: "p1")
        try s.store.commit(StoreBatch(newTasks: fresh, tasks: [kept],
                                      transitions: fresh.map { TaskTransition(taskId: $0.id, state: .created, attempt: 0, at: $0.createdAt, reason: $0.reason) }
                                          + [TaskTransition(taskId: kept.id, state: .completed, attempt: 1, at: 1003.25, reason: "exit 0")],
                                      proplets: [p], actorWrites: [.saveWorker(w), .setActorState(actor: a.id, state: "{}"), .deleteWorker("w1"), .saveWorker(w)]))

        let store = try s.reopen()
        #expect(try store.task(id: kept.id) == kept)
        for t in fresh { #expect(try store.task(id: t.id) == t) }
        #expect(try store.tasks(offset: 0, limit: 10, state: nil).tasks.map(\.spec.name) == ["kept", "a", "b"])
        #expect(try store.history(taskID: fresh[1].id).map(\.reason) == [fresh[1].reason])
        #expect(try store.history(taskID: kept.id).map(\.state) == [.created, .completed])
        #expect(try store.logs(taskID: kept.id) == TaskLogs(stdout: output, stderr: "e"))
        #expect(try store.proplets().map(\.id) == ["p1"])
        #expect(try store.workers() == [w], "the actor writes in their order")
        #expect(try store.actorState(actorID: a.id) == "{}")

        // A batch with a row the store refuses (a new task whose id exists) leaves nothing.
        var changed = fresh[0]
        changed.status = .failed(on: nil)
        try #require(throws: (any Error).self) {
            try store.commit(StoreBatch(newTasks: [storeTask("c"), fresh[1]], tasks: [changed], proplets: [p], actorWrites: [.deleteWorker("w1")]))
        }
        #expect(try store.task(id: fresh[0].id)?.state == .created)
        #expect(try store.tasks(offset: 0, limit: 10, state: nil).total == 3)
        #expect(try store.workers().count == 1)
    }

    @Test(arguments: StoreKind.allCases)
    func actorsInboxesExecutionsAndWorkers(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        let store = s.store
        let a = ActorRecord(id: "a1", spec: ActorSpec(name: "echo", image: "r/echo"), createdAt: 1, updatedAt: 1)
        try store.saveActor(a)
        var messages: [ExecutionRecord] = []
        for i in 0..<3 {
            let e = ExecutionRecord(id: "e\(i)", actorId: a.id, contentType: "application/octet-stream", messageBytes: 3, env: ["I": "\(i)"], submittedAt: Double(i))
            try store.enqueue(e, message: InboxMessage(executionID: e.id, actorID: a.id, body: Data([0, 255, UInt8(i)]), contentType: e.contentType))
            messages.append(e)
        }
        #expect(try store.inbox().map(\.execution.id) == ["e0", "e1", "e2"])
        #expect(try store.message(executionID: "e1")?.body == Data([0, 255, 1]))
        var done = messages[0]
        done.status = .complete
        done.runtime = 1.5
        done.cpuUsec = 2_000
        done.memoryPeakBytes = 4096
        try store.finishExecution(done, logs: TaskLogs(stdout: "out", stderr: "err"), results: Data([1, 2, 3]))
        var failed = messages[1]
        failed.status = .error
        failed.runtime = 0.5
        failed.cpuUsec = 1_000
        failed.memoryPeakBytes = 8192
        try store.finishExecution(failed, logs: TaskLogs(), results: Data())
        var running = messages[2]
        running.status = .running
        try store.saveExecution(running)
        try store.setActorState(actorID: a.id, state: "{\"n\":1}")
        var w = WorkerRecord(id: "w1", actorId: a.id, revision: 1, createdAt: 1)
        w.state = .ready(on: "p1")
        try store.saveWorker(w)

        let reopened = try s.reopen()
        #expect(try reopened.actors().map(\.id) == ["a1"])
        #expect(try reopened.inbox().map(\.execution.id) == ["e2"], "finished executions leave the inbox")
        #expect(try reopened.inbox().first?.execution.status == .running)
        #expect(try reopened.message(executionID: "e0") == nil)
        #expect(try reopened.execution(id: "e0")?.status == .complete)
        #expect(try reopened.executionLogs(id: "e0") == TaskLogs(stdout: "out", stderr: "err"))
        #expect(try reopened.executionResults(id: "e0") == Data([1, 2, 3]))
        #expect(try reopened.executionResults(id: "e2") == Data())
        #expect(try reopened.executionResults(id: "none") == nil)
        let page = try reopened.executions(actorID: a.id, offset: 0, limit: 2)
        #expect(page.total == 3 && page.executions.map(\.id) == ["e2", "e1"], "newest first")
        #expect(try reopened.executionTotals(actorID: a.id) == ExecutionTotals(count: 3, complete: 1, error: 1, runtime: 2.0, cpuUsec: 3_000, memoryPeakBytes: 8192))
        #expect(try reopened.executionTotals(actorID: "none") == ExecutionTotals())
        #expect(try reopened.actorState(actorID: a.id) == "{\"n\":1}")
        #expect(try reopened.workers().map(\.id) == ["w1"])
        #expect(try reopened.workers().first?.propletId == "p1")

        // A deleted actor takes everything with it, and late writes do not bring it back.
        try reopened.deleteActor(id: a.id)
        try reopened.saveExecution(running)
        try reopened.finishExecution(running, logs: TaskLogs(), results: Data())
        try reopened.saveWorker(w)
        #expect(try reopened.actors().isEmpty)
        #expect(try reopened.inbox().isEmpty)
        #expect(try reopened.workers().isEmpty)
        #expect(try reopened.execution(id: "e2") == nil)
        #expect(try reopened.actorState(actorID: a.id) == nil)
    }

    @Test(arguments: StoreKind.allCases)
    func tokensAreKeptAsHashesAndStayRevoked(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        try s.store.insertToken(APIToken(id: "t1", name: "ci", createdAt: 10), sha256: "aa")
        try s.store.insertToken(APIToken(id: "t2", name: "ops", createdAt: 11), sha256: "bb")
        #expect(try s.store.revokeToken(id: "t1", at: 20)?.revokedAt == 20)
        #expect(try s.store.revokeToken(id: "t1", at: 30)?.revokedAt == 20, "revoked once")
        #expect(try s.store.revokeToken(id: "none", at: 30) == nil)
        // The same hash again (a configured token re-imported at start) changes nothing.
        try s.store.insertToken(APIToken(id: "t3", name: "again", createdAt: 12), sha256: "aa")
        let tokens = try s.reopen().tokens()
        #expect(tokens.map(\.token.id) == ["t1", "t2"])
        #expect(tokens.map(\.sha256) == ["aa", "bb"])
        #expect(tokens[0].token.revokedAt == 20 && tokens[1].token.revokedAt == nil)
    }

    /// Roles, identities, expiry and rotation are kept; the audit log is numbered in order and
    /// append-only.
    @Test(arguments: StoreKind.allCases)
    func tokenRolesRotationAndTheAuditLogAreKept(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        try s.store.insertToken(APIToken(id: "t1", name: "dash", identity: "grafana", role: .viewer, createdAt: 10, expiresAt: 99), sha256: "aa")
        #expect(try s.store.rotateToken(id: "t1", sha256: "cc", at: 15)?.rotatedAt == 15)
        #expect(try s.store.rotateToken(id: "none", sha256: "dd", at: 15) == nil)
        _ = try s.store.revokeToken(id: "t1", at: 20)
        #expect(try s.store.rotateToken(id: "t1", sha256: "ee", at: 25) == nil, "a revoked token is not rotated")
        let entries = (1...3).map { i in
            AuditEntry(at: Double(i), identity: "alice", tokenId: "t1", role: "developer", method: "POST", path: "/tasks/\(i)",
                       route: "POST /tasks/{id}", status: 200 + i, peer: "127.0.0.1")
        }
        try s.store.appendAudit(Array(entries[0..<2]))
        try s.store.appendAudit([entries[2]])
        let reopened = try s.reopen()
        let token = try #require(try reopened.tokens().first)
        #expect(token.sha256 == "cc")
        #expect(token.token == APIToken(id: "t1", name: "dash", identity: "grafana", role: .viewer, createdAt: 10, expiresAt: 99, rotatedAt: 15, revokedAt: 20))
        let read = try reopened.audit(after: 0, limit: 10)
        #expect(read.map(\.path) == ["/tasks/1", "/tasks/2", "/tasks/3"])
        #expect(read.map(\.seq) == read.map(\.seq).sorted() && Set(read.map(\.seq)).count == 3)
        #expect(read.first.map { var e = $0; e.seq = 0; return e } == entries[0])
        #expect(try reopened.audit(after: read[0].seq, limit: 1).map(\.path) == ["/tasks/2"])
    }

    /// Retention: a prune removes the audit entries before its time and is recorded; the rest
    /// still cannot be deleted or changed. Tokens made through the API go a while after they
    /// ended; a configured token's record (which keeps it revoked) stays.
    @Test(arguments: StoreKind.allCases)
    func retentionPrunesOldAuditEntriesAndEndedTokensOnly(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        try s.store.appendAudit((1...4).map { i in
            AuditEntry(at: Double(i * 10), identity: "alice", tokenId: "t1", role: "admin", method: "POST", path: "/tasks", route: "POST /tasks", status: 201, peer: "::1")
        })
        #expect(try s.store.pruneAudit(before: 25, at: 100) == 2)
        #expect(try s.store.audit(after: 0, limit: 10).map(\.at) == [30, 40])
        #expect(try s.store.pruneAudit(before: 25, at: 101) == 0)
        // What no recorded prune covers still cannot be deleted or changed, whoever asks.
        switch s.kind {
        case .sqlite:
            let sqlite = try #require(s.store as? SQLiteStore)
            #expect(throws: (any Error).self) { try sqlite.pool.write { try $0.execute(sql: "DELETE FROM audit_log WHERE at = 30") } }
            #expect(throws: (any Error).self) { try sqlite.pool.write { try $0.execute(sql: "DELETE FROM audit_prunes") } }
        case .postgres:
            let server = try #require(s.server)
            #expect(try server.psql("DELETE FROM audit_log WHERE at = 30").status != 0)
            #expect(try server.psql("UPDATE audit_prunes SET before = 1e12").status != 0)
        }
        #expect(try s.store.audit(after: 0, limit: 10).count == 2)
        try s.store.insertToken(APIToken(id: "old", name: "ci", createdAt: 10, revokedAt: 20), sha256: "aa")
        try s.store.insertToken(APIToken(id: "expired", name: "task", createdAt: 10, expiresAt: 15), sha256: "bb")
        try s.store.insertToken(APIToken(id: "recent", name: "ci2", createdAt: 10, revokedAt: 90), sha256: "cc")
        try s.store.insertToken(APIToken(id: "live", name: "ops", createdAt: 10, expiresAt: 500), sha256: "dd")
        try s.store.insertToken(APIToken(id: "cfg-x", name: "configured", createdAt: 0, revokedAt: 5), sha256: "ee")
        #expect(Set(try s.store.pruneTokens(endedBefore: 50).map(\.id)) == ["old", "expired"])
        #expect(Set(try s.reopen().tokens().map(\.token.id)) == ["recent", "live", "cfg-x"])
    }

    /// Proplet identities: kept in order, revoked once (by whom, when), never deleted.
    @Test(arguments: StoreKind.allCases)
    func propletIdentitiesAreKeptAndRevokedOnce(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        try s.store.insertPropletIdentity(PropletIdentity(id: "proplet-b", name: "rack-2", createdBy: "alice", createdAt: 20, namespaces: ["team-a", "team-b"]))
        try s.store.insertPropletIdentity(PropletIdentity(id: "proplet-a", name: "rack-1", createdBy: "alice", createdAt: 10))
        #expect(throws: (any Error).self) { try s.store.insertPropletIdentity(PropletIdentity(id: "proplet-a", name: "again", createdBy: "bob", createdAt: 30)) }
        #expect(try s.store.revokePropletIdentity(id: "proplet-a", by: "bob", at: 40))
        #expect(try s.store.revokePropletIdentity(id: "proplet-a", by: "carol", at: 50) == false, "revoked once")
        #expect(try s.store.revokePropletIdentity(id: "proplet-none", by: "bob", at: 50) == false)
        let reopened = try s.reopen()
        #expect(try reopened.propletIdentities().map(\.id) == ["proplet-a", "proplet-b"])
        #expect(try reopened.propletIdentity(id: "proplet-a") == PropletIdentity(id: "proplet-a", name: "rack-1", createdBy: "alice", createdAt: 10, revokedAt: 40, revokedBy: "bob"))
        #expect(try reopened.propletIdentity(id: "proplet-b")?.revokedAt == nil)
        #expect(try reopened.propletIdentity(id: "proplet-b")?.namespaces == ["team-a", "team-b"])
        #expect(try reopened.propletIdentity(id: "proplet-a")?.namespaces == nil)
        #expect(try reopened.propletIdentity(id: "proplet-none") == nil)
    }

    /// Secrets: sealed bytes in, the same bytes out, a name taken once, removed once; the store
    /// never holds the value (SecretVault seals it before).
    @Test(arguments: StoreKind.allCases)
    func secretsAreStoredSealedAndTakenOnce(_ kind: StoreKind) throws {
        let s = try StoreUnderTest(kind)
        let vault = SecretVault(store: s.store, box: try SecretBox(key: Array(repeating: 7, count: 32)))
        let value: [UInt8] = Array("the-value-\u{0}".utf8) + [0xff]
        #expect(try vault.create(name: "db", value: value, at: 5) == SecretInfo(name: "db", sizeBytes: value.count, createdAt: 5, namespace: "default"))
        #expect(throws: PropellerError.self) { try vault.create(name: "db", value: [1], at: 6) }
        _ = try vault.create(name: "api.key", value: [2, 3], at: 7)
        let store = try s.reopen()
        #expect(try store.secrets() == [SecretInfo(name: "api.key", sizeBytes: 2, createdAt: 7), SecretInfo(name: "db", sizeBytes: value.count, createdAt: 5)])
        let sealed = try #require(try store.sealedSecret("db"))
        #expect(!sealed.indices.contains { i in sealed[i...].starts(with: value) }, "the store holds the value sealed")
        #expect(vault.values([SecretMount(name: "db"), SecretMount(name: "db", target: "/x"), SecretMount(name: "gone")], in: "default").values
                == [SecretValue(name: "db", value: Data(value))])
        // The same name in another namespace is another secret.
        _ = try vault.create(name: "db", value: [9], in: "team-a", at: 8)
        #expect(vault.values([SecretMount(name: "db")], in: "team-a").values == [SecretValue(name: "db", value: Data([9]))])
        #expect(try vault.list(in: "team-a") == [SecretInfo(name: "db", sizeBytes: 1, createdAt: 8, namespace: "team-a")])
        #expect(try vault.list().map(\.name) == ["api.key", "db"])
        #expect(try vault.list(in: nil).count == 3)
        #expect(vault.values([SecretMount(name: "api.key")], in: "team-a").values.isEmpty)
        #expect(try vault.delete("db", in: "team-a"))
        #expect(try store.deleteSecret("db"))
        #expect(try !store.deleteSecret("db"))
        #expect(try store.sealedSecret("db") == nil)
    }

    /// The whole manager (its one state machine and driver) on each store: tasks placed, ended,
    /// and resumed by a new driver on the same data, as after a restart.
    @Test(arguments: StoreKind.allCases)
    func theTaskServiceResumesFromTheStore(_ kind: StoreKind) async throws {
        let s = try StoreUnderTest(kind)
        let bus = RecordingBus()
        let first = TaskService(store: s.store, bus: bus)
        await first.handleAnnouncement(announcement("p1", memory: 4 << 30))
        let done = try await first.create(TaskSpec(name: "done", image: "r/a", resources: Resources(memoryBytes: 1 << 30)), start: true)
        let running = try await first.create(TaskSpec(name: "running", image: "r/a", resources: Resources(memoryBytes: 1 << 30)), start: true)
        let waiting = try await first.create(TaskSpec(name: "waiting", image: "r/a", resources: Resources(memoryBytes: 8 << 30)), start: true)
        #expect(bus.startedOn[done.id] == "p1" && bus.startedOn[running.id] == "p1")
        await first.handleResult(TaskResult(taskId: done.id, attempt: 1, propletId: "p1", state: .completed, exitCode: 0, stdoutTail: "ok\n"))

        let waitingBefore = try await first.task(waiting.id)
        #expect(waitingBefore.assignedProplet == nil && waitingBefore.reason != nil, "\(waitingBefore)")
        let second = TaskService(store: try s.reopen(), bus: RecordingBus())
        try await second.recover()
        #expect(try await second.task(done.id).state == .completed)
        #expect(try await second.logs(done.id).stdout == "ok\n")
        #expect(try await second.task(running.id).assignedProplet == "p1")
        #expect(try await second.task(waiting.id).state == waitingBefore.state)
        #expect(try await second.task(waiting.id).assignedProplet == nil)
    }
}
