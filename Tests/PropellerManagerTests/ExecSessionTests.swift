import Foundation
import PropellerCore
@testable import PropellerManager
import Testing

/// Exec sessions in the task service: what is sent to the proplet, and frames from it put in
/// order, without duplicates, for any number of followers.
extension TaskServiceTests {
    func runningTask(_ s: TaskService) async throws -> String {
        await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .running, at: WallClock.now()))
        return t.id
    }

    func frame(_ id: String, _ seq: Int, _ kind: SessionFrame.Kind, _ text: String = "", proplet: String = "p", exit: Int32? = nil) -> SessionFrame {
        SessionFrame(sessionId: id, propletId: proplet, seq: seq, kind: kind, stream: kind == .output ? .stdout : nil,
                     data: kind == .output ? Data(text.utf8) : nil, exitCode: exit)
    }

    @Test func execSessionsKeepFramesInOrderForEveryFollower() async throws {
        let s = try service()
        let task = try await runningTask(s)
        let view = try await s.openSession(task, ExecSessionRequest(command: ["sh"], tty: true, rows: 30, cols: 100))
        let open = try #require(bus.sessionCommands.withLock { $0.first })
        #expect(open.1 == "p" && open.0.kind == .open && open.0.command == ["sh"] && open.0.tty == true && open.0.rows == 30 && open.0.attempt == 1)
        #expect(view.state == .starting)

        let early = try await s.followSession(task, view.sessionId)
        await s.handleSessionFrame(frame(view.sessionId, 0, .started))
        await s.handleSessionFrame(frame(view.sessionId, 2, .output, "b"))       // ahead of 1: held
        await s.handleSessionFrame(frame(view.sessionId, 1, .output, "a"))
        await s.handleSessionFrame(frame(view.sessionId, 1, .output, "a"))       // a duplicate
        await s.handleSessionFrame(frame(view.sessionId, 3, .output, "x", proplet: "intruder"))  // not its proplet
        #expect(try await s.session(task, view.sessionId).state == .running)
        // Input goes out numbered, in chunks of at most one message each.
        try await s.sendInput(task, view.sessionId, [UInt8](repeating: 0x41, count: SessionCommand.chunkBytes + 10), eof: true)
        let inputs = bus.sessionCommands.withLock { $0.map(\.0).filter { $0.kind == .input } }
        #expect(inputs.map(\.seq) == [0, 1] && inputs.map { $0.data?.count } == [SessionCommand.chunkBytes, 10] && inputs.map(\.eof) == [nil, true])
        await s.handleSessionFrame(frame(view.sessionId, 3, .exit, exit: 7))

        var seen: [Int] = []
        for await f in early { seen.append(f.seq) }
        #expect(seen == [0, 1, 2, 3])
        // A follower after the end reads what was kept, from where it asks.
        var late: [String] = []
        for await f in try await s.followSession(task, view.sessionId, after: 1) { late.append(String(decoding: f.data ?? Data(), as: UTF8.self)) }
        #expect(late == ["a", "b", ""])
        let ended = try await s.session(task, view.sessionId)
        #expect(ended.state == .exited && ended.exitCode == 7)
        await #expect(throws: APIError.self) { try await s.sendInput(task, view.sessionId, [1], eof: false) }
    }

    @Test func execNeedsARunningTaskAndSaysWhatIsWrong() async throws {
        let s = try service()
        await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
        let pending = try await s.create(spec("t", memory: 64 * Self.gib), start: false)
        await #expect(throws: APIError.self) { try await s.openSession(pending.id, ExecSessionRequest(command: ["sh"])) }
        let task = try await runningTask(s)
        await #expect(throws: APIError.self) { try await s.openSession(task, ExecSessionRequest(command: [])) }
        await #expect(throws: APIError.self) { try await s.openSession(task, ExecSessionRequest(command: ["sh"], workingDirectory: "relative")) }
        await #expect(throws: APIError.self) { try await s.openSession(task, ExecSessionRequest(command: ["sh"], environment: ["=x"])) }
        await #expect(throws: APIError.self) { try await s.openSession(task, ExecSessionRequest(command: ["sh"], rows: 0)) }
        await #expect(throws: APIError.self) { try await s.session(task, "no-such-session") }
        // The proplet's refusal ends the session with its reason and code.
        let view = try await s.openSession(task, ExecSessionRequest(command: ["nope"]))
        var refusal = frame(view.sessionId, 0, .error, exit: 127)
        refusal.error = "exec nope: ENOENT (not found in the container)"
        await s.handleSessionFrame(refusal)
        let failed = try await s.session(task, view.sessionId)
        #expect(failed.state == .failed && failed.exitCode == 127 && failed.error?.contains("not found") == true)
    }

    /// A lost message before the end (a full inbox drops some): the end still comes, saying so.
    @Test func anEndAfterAGapStillEndsTheSession() async throws {
        let s = try service()
        let task = try await runningTask(s)
        let view = try await s.openSession(task, ExecSessionRequest(command: ["sh"]))
        let stream = try await s.followSession(task, view.sessionId)
        await s.handleSessionFrame(frame(view.sessionId, 0, .started))
        await s.handleSessionFrame(frame(view.sessionId, 2, .output, "late"))
        await s.handleSessionFrame(frame(view.sessionId, 3, .exit, exit: 0))
        var kinds: [SessionFrame.Kind] = []
        for await f in stream { kinds.append(f.kind) }
        #expect(kinds == [.started, .output, .exit])
        #expect(try await s.session(task, view.sessionId).error?.contains("1 messages of its output were lost") == true)
    }
}

/// A pull's progress reaches `GET /tasks/{id}` and watchers while the task pulls, from its own
/// proplet only, and is gone once the phase moves on.
extension TaskServiceTests {
    @Test func pullProgressIsShownWhilePullingOnly() async throws {
        let s = try service()
        await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .pulling, at: WallClock.now()))
        let watch = try await s.watch(t.id)
        var report = TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .pulling, at: WallClock.now())
        report.pull = PullReport(receivedBytes: 5 << 20, totalBytes: 20 << 20)
        await s.handleEvent(report)
        #expect(try await s.task(t.id).pull == PullReport(receivedBytes: 5 << 20, totalBytes: 20 << 20))
        var intruder = report
        intruder.propletId = "other"
        intruder.pull = PullReport(receivedBytes: 1, totalBytes: 1)
        await s.handleEvent(intruder)
        #expect(try await s.task(t.id).pull?.receivedBytes == 5 << 20)
        await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .running, at: WallClock.now()))
        #expect(try await s.task(t.id).pull == nil)
        var seen: [PullReport?] = []
        for await record in watch {
            seen.append(record.pull)
            if record.state == .running { break }
        }
        #expect(seen.contains(PullReport(receivedBytes: 5 << 20, totalBytes: 20 << 20)))
    }
}
