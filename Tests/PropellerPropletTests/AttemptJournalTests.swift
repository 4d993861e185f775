import Foundation
import PropellerCore
@testable import PropellerProplet
import PropellerTestSupport
import Testing

@Suite struct AttemptJournalTests {
    /// What a proplet accepted survives its restart: the same start delivered again is known,
    /// and an attempt that never ended is reported as having died with the previous run.
    @Test func acceptedAttemptsSurviveARestartAndUnfinishedOnesAreFound() throws {
        let dir = try TempDirectory("propeller-journal")
        defer { dir.remove() }
        let path = dir.path + "/attempts.jsonl"
        do {
            let journal = try AttemptJournal(path: path)
            try journal.accept(TaskAttempt(taskId: "a", attempt: 1))
            try journal.accept(TaskAttempt(taskId: "b", attempt: 1))
            try journal.accept(TaskAttempt(taskId: "a", attempt: 1))  // once only
            journal.end(TaskResult(taskId: "a", attempt: 1, propletId: "p", state: .completed, exitCode: 0))
        }
        // A torn last line (a crash in the middle of a write) is skipped.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"event":"accep"#.utf8))
        try handle.close()
        let again = try AttemptJournal(path: path)
        #expect(again.contains(TaskAttempt(taskId: "a", attempt: 1)) && again.contains(TaskAttempt(taskId: "b", attempt: 1)))
        #expect(!again.contains(TaskAttempt(taskId: "a", attempt: 2)))
        #expect(again.unfinished() == [TaskAttempt(taskId: "b", attempt: 1)])
        try again.accept(TaskAttempt(taskId: "c", attempt: 1))
        let entries = AttemptJournal.read(path)
        #expect(entries.map(\.event) == [.accepted, .accepted, .ended, .accepted], "the torn line was cut before the next append")
        #expect(entries[2].exitCode == 0 && entries[2].state == .completed)
    }
}
