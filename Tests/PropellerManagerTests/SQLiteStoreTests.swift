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

    /// WAL mode, as documented: API reads never wait for the scheduler's writes. (What every
    /// store must do is in StoreContractTests.)
    @Test func theDatabaseIsInWALMode() throws {
        let path = dir.path + "/manager.db"
        let store = try SQLiteStore(path: path)
        let t = storeTask("one")
        try store.insertTask(t, transition: TaskTransition(taskId: t.id, state: .created, attempt: 0, at: 1000, reason: nil))
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func aCorruptFileIsAClearError() throws {
        let path = dir.path + "/bad.db"
        try Data("this is not a database, just text that is long enough to have a header".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: PropellerError.self) { try SQLiteStore(path: path) }
    }
}
