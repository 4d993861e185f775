import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

@Suite("SQLite store")
final class SQLiteStoreTests: Sendable {
    let dir: TempDirectory
    init() throws { dir = try TempDirectory("propeller-store") }
    deinit { dir.remove() }  // each test has its own instance and directory

    func task(_ name: String, at time: Double = 1000) -> TaskRecord {
        TaskRecord(id: UUID().uuidString.lowercased(), spec: TaskSpec(name: name, image: "127.0.0.1:5000/app:v1", command: ["echo", "hi"],
                                                                      env: ["A": "1"], resources: Resources(cpuMillis: 500, memoryBytes: 64 << 20)), createdAt: time)
    }

    @Test func everythingSurvivesReopening() throws {
        let path = dir.path + "/manager.db"
        var t = task("one")
        do {
            let store = try SQLiteStore(path: path)
            try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 1000, reason: nil))
            t.status = .running(on: "p1", phase: "running")
            t.attempt = 1
            t.result = TaskResult(taskId: t.id, attempt: 1, propletId: "p1", state: .completed, exitCode: 0, stdoutTail: "out")
            try store.saveTasks([t], transitions: [TaskTransition(taskId: t.id, state: .running, attempt: 1, at: 1001, reason: "go")])
            try store.appendLog(taskID: t.id, stream: .stdout, data: "hello ", keep: 1024)
            var p = PropletRecord(announcement: PropletAnnouncement(propletId: "p1", name: "n", version: "v", labels: ["k": "v"],
                                                                   capacity: Capacity(cpuMillis: 1000, memoryBytes: 1 << 30, pids: 100, tasks: 4),
                                                                   os: "linux", arch: "amd64", cgroupMode: "v1"), now: 1000)
            p.alive = false
            try store.saveProplet(p)
        }
        let store = try SQLiteStore(path: path)
        let loaded = try #require(try store.task(id: t.id))
        #expect(loaded == t)
        #expect(try store.history(taskID: t.id).map(\.state) == [.created, .running])
        #expect(try store.activeTasks().map(\.id) == [t.id])
        #expect(try store.logs(taskID: t.id).stdout == "hello ")
        let proplets = try store.proplets()
        #expect(proplets.count == 1 && proplets[0].alive == false && proplets[0].labels == ["k": "v"])
        // WAL mode, as documented.
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func listingPagesInCreationOrderAndFiltersByState() throws {
        let store = try SQLiteStore(path: dir.path + "/m.db")
        var ids: [String] = []
        for i in 0..<5 {
            var t = task("t\(i)", at: Double(i))
            try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
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
        #expect(try store.taskCounts() == [.completed: 3, .created: 2])
        try store.deleteTask(id: ids[0])
        #expect(try store.task(id: ids[0]) == nil)
        #expect(try store.history(taskID: ids[0]).isEmpty)
    }

    @Test func logsKeepOnlyTheTail() throws {
        let store = try SQLiteStore(path: dir.path + "/m.db")
        let t = task("logs")
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 0, reason: nil))
        for i in 0..<10 { try store.appendLog(taskID: t.id, stream: .stderr, data: "line \(i)\n", keep: 14) }
        #expect(try store.logs(taskID: t.id).stderr == "line 8\nline 9\n")
        #expect(try store.logs(taskID: t.id).stdout == "")
    }

    @Test func aCorruptFileIsAClearError() throws {
        let path = dir.path + "/bad.db"
        try Data("this is not a database, just text that is long enough to have a header".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: PropellerError.self) { try SQLiteStore(path: path) }
    }
}
