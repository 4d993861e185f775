import Foundation
import PropellerCore

/// Results the manager has not acknowledged yet, one JSON file each, so they survive a proplet
/// restart and go out again until the manager has them.
final class ResultOutbox: @unchecked Sendable {
    let directory: String
    private let lock = NSLock()
    private var results: [TaskAttempt: TaskResult] = [:]

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".json") {
            if let data = FileManager.default.contents(atPath: directory + "/" + name),
               let r = try? WireCoding.decode(TaskResult.self, from: Array(data)) {
                results[r.ref] = r
            } else {
                try? FileManager.default.removeItem(atPath: directory + "/" + name)
            }
        }
    }

    private func path(_ ref: TaskAttempt) -> String { "\(directory)/\(ref.taskId)-\(ref.attempt).json" }

    func add(_ r: TaskResult) throws {
        lock.lock()
        results[r.ref] = r
        lock.unlock()
        try Data(try WireCoding.encode(r)).write(to: URL(fileURLWithPath: path(r.ref)), options: .atomic)
    }

    private let unlinkQueue = DispatchQueue(label: "propeller.outbox")

    /// Forgets an acknowledged result; its file goes in the background (an unlink can wait on a
    /// busy journal, and the agent's next message should not).
    func remove(_ ref: TaskAttempt) {
        lock.lock()
        let had = results.removeValue(forKey: ref) != nil
        lock.unlock()
        guard had else { return }
        let file = path(ref)
        unlinkQueue.async { unlink(file) }
    }

    /// Waits for background removals (tests).
    func flush() { unlinkQueue.sync {} }

    func contains(_ ref: TaskAttempt) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return results[ref] != nil
    }

    func pending() -> [TaskResult] {
        lock.lock()
        defer { lock.unlock() }
        return results.values.sorted { ($0.finishedAt ?? 0) < ($1.finishedAt ?? 0) }
    }
}
