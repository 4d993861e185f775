import Foundation
import PropellerCore

/// Exec sessions (`propeller task exec`): a process started inside a running task on its
/// proplet, its stdin sent there and its output kept here, in order, for whoever follows it
/// (`GET /tasks/{id}/exec/{session}/output`). Sessions live in the leader's memory only: a new
/// leader knows none, and the proplet ends a session it no longer hears about.
public struct ExecSessionView: Codable, Sendable, Hashable {
    public enum State: String, Codable, Sendable { case starting, running, exited, failed }
    public var sessionId: String
    public var taskId: String
    public var attempt: Int
    public var propletId: String
    public var command: [String]
    public var tty: Bool
    public var state: State
    public var exitCode: Int32?
    public var error: String?
    public var createdAt: Double
}

/// What `POST /tasks/{id}/exec` asks for.
public struct ExecSessionRequest: Codable, Sendable {
    public var command: [String]
    public var tty: Bool?
    public var stdin: Bool?
    public var environment: [String]?
    public var workingDirectory: String?
    public var rows: Int?
    public var cols: Int?

    public init(command: [String], tty: Bool? = nil, stdin: Bool? = nil, environment: [String]? = nil, workingDirectory: String? = nil,
                rows: Int? = nil, cols: Int? = nil) {
        self.command = command
        self.tty = tty
        self.stdin = stdin
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.rows = rows
        self.cols = cols
    }
}

/// One session as the leader keeps it.
struct ExecSession {
    var view: ExecSessionView
    /// Frames in order (seq from 0), at most ``ExecSession/keepBytes`` of output; older ones go
    /// once nobody follows.
    var frames: [SessionFrame] = []
    var keptBytes = 0
    /// The next frame expected from the proplet, and those that came early.
    var nextFrame = 0
    var early: [Int: SessionFrame] = [:]
    var followers: [UUID: AsyncStream<SessionFrame>.Continuation] = [:]
    var inputSeq = 0
    var lastFollowed = ContinuousClock.now
    var heard = ContinuousClock.now
    /// When the proplet last heard from this manager about it (it ends a silent session).
    var lastSent = ContinuousClock.now
    var endedAt: ContinuousClock.Instant?

    static let keepBytes = 8 << 20
    /// A session nobody follows is closed after this long.
    static let unfollowedLimit = Duration.seconds(60)
    /// An ended session stays readable (its status and output) this long.
    static let keepEnded = Duration.seconds(300)
    /// A session whose proplet says nothing about it (not even that it started) is failed after this long.
    static let startLimit = Duration.seconds(30)
    /// At most this many sessions at once on one manager.
    static let limit = 256
}

extension TaskService {
    /// Starts `request` inside running task `taskID` on its proplet; the session's view.
    public func openSession(_ taskID: String, _ request: ExecSessionRequest) throws -> ExecSessionView {
        let t = try task(taskID)
        guard t.state == .running, let proplet = t.assignedProplet else {
            throw APIError.conflict("task \(taskID) is \(t.state.rawValue): exec needs a running task")
        }
        guard state.proplets[proplet]?.alive == true else { throw APIError(status: 503, "proplet \(proplet), which runs task \(taskID), is away") }
        guard !request.command.isEmpty, !request.command[0].isEmpty else { throw APIError.unprocessable("command: at least the program to run") }
        guard request.command.allSatisfy({ !$0.contains("\0") }) else { throw APIError.unprocessable("command: arguments without NUL") }
        for entry in request.environment ?? [] {
            guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex, !entry.contains("\0") else {
                throw APIError.unprocessable("environment: KEY=VALUE entries (got \(entry.prefix(64)))")
            }
        }
        if let dir = request.workingDirectory, !dir.hasPrefix("/") || dir.contains("\0") {
            throw APIError.unprocessable("working_directory: an absolute path inside the container (got \(dir.prefix(64)))")
        }
        for (name, value) in [("rows", request.rows), ("cols", request.cols)] {
            if let value, !(1...10_000).contains(value) { throw APIError.unprocessable("\(name): 1 to 10000 (got \(value))") }
        }
        guard execSessions.count < ExecSession.limit else { throw APIError(status: 429, "\(ExecSession.limit) exec sessions are open on this manager") }
        try requireLease()
        let id = UUID().uuidString.lowercased()
        let view = ExecSessionView(sessionId: id, taskId: taskID, attempt: t.attempt, propletId: proplet, command: request.command, tty: request.tty ?? false,
                                   state: .starting, createdAt: WallClock.now())
        execSessions[id] = ExecSession(view: view)
        var open = SessionCommand(sessionId: id, kind: .open, taskId: taskID, attempt: t.attempt)
        open.command = request.command
        open.environment = request.environment
        open.workingDirectory = request.workingDirectory
        open.tty = request.tty
        open.stdin = request.stdin
        open.rows = request.rows
        open.cols = request.cols
        bus.send(open, to: proplet)
        Task { [weak self] in
            while let self, await self.sessionNeedsCare(id) { try? await Task.sleep(for: .seconds(1)) }
        }
        return view
    }

    /// The session `id` of task `taskID`.
    public func session(_ taskID: String, _ id: String) throws -> ExecSessionView {
        guard let s = execSessions[id], s.view.taskId == taskID else { throw APIError.notFound("no exec session \(id) for task \(taskID)") }
        return s.view
    }

    /// Frames from `after` on (those kept), then each new one until the session ends.
    public func followSession(_ taskID: String, _ id: String, after: Int = 0) throws -> AsyncStream<SessionFrame> {
        guard var s = execSessions[id], s.view.taskId == taskID else { throw APIError.notFound("no exec session \(id) for task \(taskID)") }
        let (stream, continuation) = AsyncStream.makeStream(of: SessionFrame.self)
        for frame in s.frames where frame.seq >= after { continuation.yield(frame) }
        if s.frames.last?.isLast == true {
            continuation.finish()
            return stream
        }
        let key = UUID()
        s.followers[key] = continuation
        s.lastFollowed = .now
        execSessions[id] = s
        continuation.onTermination = { [weak self] _ in Task { await self?.forgetSessionFollower(id, key) } }
        return stream
    }

    func forgetSessionFollower(_ id: String, _ key: UUID) {
        execSessions[id]?.followers[key] = nil
        execSessions[id]?.lastFollowed = .now
    }

    /// Bytes for the process's stdin (in chunks, in order); `eof` closes it after them.
    public func sendInput(_ taskID: String, _ id: String, _ bytes: [UInt8], eof: Bool) throws {
        var s = try liveSession(taskID, id)
        var at = 0
        repeat {
            let end = min(bytes.count, at + SessionCommand.chunkBytes)
            var input = SessionCommand(sessionId: id, kind: .input, taskId: taskID, attempt: s.view.attempt)
            input.seq = s.inputSeq
            input.data = Data(bytes[at..<end])
            input.eof = eof && end == bytes.count ? true : nil
            s.inputSeq += 1
            s.lastSent = .now
            bus.send(input, to: s.view.propletId)
            at = end
        } while at < bytes.count
        execSessions[id] = s
    }

    /// A terminal's new size.
    public func resizeSession(_ taskID: String, _ id: String, rows: Int, cols: Int) throws {
        let s = try liveSession(taskID, id)
        guard (1...10_000).contains(rows), (1...10_000).contains(cols) else { throw APIError.unprocessable("rows and cols: 1 to 10000") }
        var resize = SessionCommand(sessionId: id, kind: .resize, taskId: taskID, attempt: s.view.attempt)
        resize.rows = rows
        resize.cols = cols
        bus.send(resize, to: s.view.propletId)
    }

    /// Sends `signal` to the session's process.
    public func signalSession(_ taskID: String, _ id: String, signal: Int32) throws {
        let s = try liveSession(taskID, id)
        guard (1...64).contains(signal) else { throw APIError.unprocessable("signal: 1 to 64 (got \(signal))") }
        var command = SessionCommand(sessionId: id, kind: .signal, taskId: taskID, attempt: s.view.attempt)
        command.signal = signal
        bus.send(command, to: s.view.propletId)
    }

    /// Kills the session's process (if it still runs); the session ends when its proplet reports it.
    public func closeSession(_ taskID: String, _ id: String) throws {
        guard let s = execSessions[id], s.view.taskId == taskID else { throw APIError.notFound("no exec session \(id) for task \(taskID)") }
        guard s.endedAt == nil else { return }
        bus.send(SessionCommand(sessionId: id, kind: .close, taskId: taskID, attempt: s.view.attempt), to: s.view.propletId)
    }

    private func liveSession(_ taskID: String, _ id: String) throws -> ExecSession {
        guard let s = execSessions[id], s.view.taskId == taskID else { throw APIError.notFound("no exec session \(id) for task \(taskID)") }
        guard s.endedAt == nil else { throw APIError.conflict("exec session \(id) has ended (\(s.view.state.rawValue))") }
        try requireLease()
        return s
    }

    /// A frame from a proplet: kept and handed to followers in order.
    func handleSessionFrame(_ frame: SessionFrame) {
        guard var s = execSessions[frame.sessionId], s.view.propletId == frame.propletId, s.endedAt == nil else { return }
        s.heard = .now
        if frame.seq > s.nextFrame {
            if s.early.count < 4096 { s.early[frame.seq] = frame }
            // The end came and something before it did not (a full inbox drops messages): what
            // did come goes out in order, the end says what was lost.
            if frame.isLast {
                let lost = frame.seq - s.nextFrame - (s.early.count - 1)
                for f in s.early.values.sorted(by: { $0.seq < $1.seq }) {
                    var f = f
                    if f.isLast { f.error = [f.error, "\(lost) messages of its output were lost on the way"].compactMap { $0 }.joined(separator: "; ") }
                    accept(f, into: &s)
                }
            }
            execSessions[frame.sessionId] = s
            return
        }
        guard frame.seq == s.nextFrame else { return }  // a duplicate
        var next: SessionFrame? = frame
        while let f = next {
            accept(f, into: &s)
            next = s.endedAt == nil ? s.early.removeValue(forKey: s.nextFrame) : nil
        }
        execSessions[frame.sessionId] = s
    }

    private func accept(_ frame: SessionFrame, into s: inout ExecSession) {
        s.nextFrame = frame.seq + 1
        switch frame.kind {
        case .started: s.view.state = .running
        case .output: break
        case .exit:
            s.view.state = .exited
            s.view.exitCode = frame.exitCode
            s.view.error = frame.error
        case .error:
            s.view.state = .failed
            s.view.exitCode = frame.exitCode
            s.view.error = frame.error
        }
        s.frames.append(frame)
        s.keptBytes += frame.data?.count ?? 0
        // Nobody follows: what nobody will read beyond the limit goes, oldest first.
        while s.keptBytes > ExecSession.keepBytes, s.frames.count > 1 {
            s.keptBytes -= s.frames.removeFirst().data?.count ?? 0
        }
        for follower in s.followers.values { follower.yield(frame) }
        if frame.isLast { end(&s) }
    }

    private func end(_ s: inout ExecSession) {
        s.endedAt = .now
        s.early = [:]
        for follower in s.followers.values { follower.finish() }
        s.followers = [:]
    }

    /// Ends `id` with an error frame of the manager's own (the proplet went away, the session was not followed).
    private func fail(_ id: String, _ message: String) {
        guard var s = execSessions[id], s.endedAt == nil else { return }
        accept(SessionFrame(sessionId: id, propletId: s.view.propletId, seq: s.nextFrame, kind: .error, error: message), into: &s)
        execSessions[id] = s
    }

    /// Once a second per session: keepalives while followed, a close when nobody follows, a
    /// failure when its proplet or task went away, forgotten a while after it ended. false: done.
    func sessionNeedsCare(_ id: String) -> Bool {
        guard let s = execSessions[id] else { return false }
        let now = ContinuousClock.now
        if let endedAt = s.endedAt {
            if now - endedAt > ExecSession.keepEnded {
                execSessions[id] = nil
                return false
            }
            return true
        }
        let proplet = state.proplets[s.view.propletId]
        if proplet?.alive != true {
            fail(id, "proplet \(s.view.propletId) went away")
        } else if s.view.state == .starting && now - s.heard > ExecSession.startLimit {
            fail(id, "proplet \(s.view.propletId) did not start the process within \(Int(ExecSession.startLimit.components.seconds)) s")
        } else if s.followers.isEmpty && now - s.lastFollowed > ExecSession.unfollowedLimit {
            bus.send(SessionCommand(sessionId: id, kind: .close, taskId: s.view.taskId, attempt: s.view.attempt), to: s.view.propletId)
            fail(id, "nobody followed the session for \(Int(ExecSession.unfollowedLimit.components.seconds)) s")
        } else if now - s.lastSent > .seconds(SessionCommand.keepaliveInterval) {
            // Tell the proplet the session is still wanted (input counts as much).
            execSessions[id]?.lastSent = now
            bus.send(SessionCommand(sessionId: id, kind: .keepalive, taskId: s.view.taskId, attempt: s.view.attempt), to: s.view.propletId)
        }
        return true
    }
}
