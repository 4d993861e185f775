#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage

/// What this proplet accepted and how each attempt ended, one JSON line per event in
/// `DATA/proplet/attempts.jsonl`, appended and synced before the attempt starts:
///
/// - a start the broker delivers again (a QoS 1 redelivery after the proplet crashed, or one
///   queued in its session while it was away) is recognised after a restart too, so no attempt
///   runs twice on this proplet;
/// - an attempt accepted by a proplet that then died has no `ended` line: the next start of the
///   proplet reports it failed ("the proplet restarted while it ran") instead of leaving the
///   manager to find out from heartbeats;
/// - it is the proplet's own account of what it ran, which `scripts/chaos` checks the manager's
///   against.
///
/// Kept to the last 20,000 attempts (rewritten when it passes 50,000 lines).
final class AttemptJournal: @unchecked Sendable {
    struct Entry: Codable, Sendable {
        enum Event: String, Codable, Sendable { case accepted, ended }
        var event: Event
        var taskId: String
        var attempt: Int
        var at: Double
        /// The container's id (its cgroups and run directory are named by it).
        var container: String?
        var state: TaskState?
        var exitCode: Int32?
        var error: String?
    }

    let path: String
    private let lock = NSLock()
    private var fd: Int32
    private var lines = 0
    /// Attempts accepted, with their end when known, in order.
    private var order: [TaskAttempt] = []
    private var ended: [TaskAttempt: Entry] = [:]
    private var accepted: Set<TaskAttempt> = []

    static let keep = 20_000
    static let rewriteAfter = 50_000

    init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if let data = FileManager.default.contents(atPath: path) {
            // A torn last line (a crash in the middle of a write) is cut off, so the next append
            // starts a line of its own.
            if let last = data.last, last != UInt8(ascii: "\n") {
                truncate(path, off_t(data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0))
            }
            for line in data.split(separator: UInt8(ascii: "\n")) {
                guard let e = try? WireCoding.decode(Entry.self, from: Array(line)) else { continue }  // a torn last line
                lines += 1
                let ref = TaskAttempt(taskId: e.taskId, attempt: e.attempt)
                switch e.event {
                case .accepted: if accepted.insert(ref).inserted { order.append(ref) }
                case .ended: ended[ref] = e
                }
            }
        }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PropellerError(.systemCall, "open \(path): \(errnoName(errno))") }
    }

    deinit { close(fd) }

    /// Whether this proplet ever accepted the attempt (as far back as the journal keeps).
    func contains(_ ref: TaskAttempt) -> Bool { lock.withLock { accepted.contains(ref) } }

    /// Attempts accepted that never ended: they died with a previous run of the proplet.
    func unfinished() -> [TaskAttempt] { lock.withLock { order.filter { ended[$0] == nil } } }

    /// Every entry, in order (tests and `scripts/chaos`).
    static func read(_ path: String) -> [Entry] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? WireCoding.decode(Entry.self, from: Array($0)) }
    }

    /// Records an accepted attempt, synced to disk before it returns.
    func accept(_ ref: TaskAttempt, container: ContainerID? = nil) throws {
        try lock.withLock {
            guard accepted.insert(ref).inserted else { return }
            order.append(ref)
            try append(Entry(event: .accepted, taskId: ref.taskId, attempt: ref.attempt, at: WallClock.now(), container: container?.hex), sync: true)
        }
    }

    /// Records how an attempt ended.
    func end(_ result: TaskResult) {
        lock.withLock {
            let entry = Entry(event: .ended, taskId: result.taskId, attempt: result.attempt, at: result.finishedAt ?? WallClock.now(), state: result.state,
                              exitCode: result.exitCode, error: result.error)
            ended[result.ref] = entry
            try? append(entry, sync: false)
        }
    }

    private func append(_ entry: Entry, sync: Bool) throws {
        var line = try WireCoding.encode(entry)
        line.append(UInt8(ascii: "\n"))
        let n = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == line.count else { throw PropellerError(.systemCall, "append to \(path): \(errnoName(errno))") }
        if sync && fdatasync(fd) != 0 { throw PropellerError(.systemCall, "sync \(path): \(errnoName(errno))") }
        lines += 1
        if lines > Self.rewriteAfter { compact() }
    }

    /// Keeps the last ``keep`` attempts: written to a new file, synced, renamed over the old.
    private func compact() {
        let kept = Array(order.suffix(Self.keep))
        var out: [UInt8] = []
        for ref in kept {
            for e in [Entry(event: .accepted, taskId: ref.taskId, attempt: ref.attempt, at: 0), ended[ref]].compactMap({ $0 }) {
                guard let line = try? WireCoding.encode(e) else { continue }
                out += line + [UInt8(ascii: "\n")]
            }
        }
        let temp = path + ".new"
        let tfd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard tfd >= 0 else { return }
        let n = out.withUnsafeBytes { write(tfd, $0.baseAddress, $0.count) }
        guard n == out.count, fsync(tfd) == 0, close(tfd) == 0, rename(temp, path) == 0 else {
            unlink(temp)
            return
        }
        close(fd)
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        let dropped = Set(order.prefix(order.count - kept.count))
        order = kept
        accepted.subtract(dropped)
        for ref in dropped { ended[ref] = nil }
        lines = kept.count + kept.filter { ended[$0] != nil }.count
    }
}
