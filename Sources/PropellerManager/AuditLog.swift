import Dispatch
import PropellerCore

/// One line of the audit log: who did what, when, from where, and how it ended.
public struct AuditEntry: Codable, Sendable, Hashable {
    /// The store's order (from 1; 0 before the store took it).
    public var seq: Int64
    public var at: Double
    /// The identity and token that made the request ("" for a request without a valid token).
    public var identity: String
    public var tokenId: String
    /// The role the token carried, or "" when none.
    public var role: String
    public var method: String
    /// The path as requested (without its query).
    public var path: String
    /// The rule it matched ("POST /tasks/{id}/start"), or "" for none.
    public var route: String
    public var status: Int
    /// The peer's IP address.
    public var peer: String

    public init(seq: Int64 = 0, at: Double, identity: String, tokenId: String, role: String, method: String, path: String,
                route: String, status: Int, peer: String) {
        self.seq = seq
        self.at = at
        self.identity = identity
        self.tokenId = tokenId
        self.role = role
        self.method = method
        self.path = path
        self.route = route
        self.status = status
        self.peer = peer
    }
}

/// Where the audit log lives: appended to, never changed.
public protocol AuditStore: Sendable {
    /// Appends entries in order, numbering them.
    func appendAudit(_ entries: [AuditEntry]) throws
    /// Entries after `seq`, oldest first, at most `limit`.
    func audit(after seq: Int64, limit: Int) throws -> [AuditEntry]
    /// Removes the entries older than `before` (retention), recording the prune first in its own
    /// append-only table: the store refuses to delete an entry no recorded prune covers.
    /// Returns how many went.
    func pruneAudit(before: Double, at now: Double) throws -> Int
}

/// The manager's audit log: requests are recorded as they end and written to the store in
/// batches on a queue of their own, so that a burst of writes costs one transaction and no
/// request waits for the disk. A reader flushes first; so does a manager that stops. A manager
/// killed outright loses what it recorded in its last ~20 ms (SECURITY.md says so).
public final class AuditLog: Sendable {
    let store: any AuditStore
    private let pending = Locked<[AuditEntry]>([])
    private let queue = DispatchQueue(label: "propeller.audit")
    private let failures = Locked<Int>(0)
    private let onFailure: @Sendable (any Error) -> Void

    public init(store: any AuditStore, onFailure: @escaping @Sendable (any Error) -> Void = { _ in }) {
        self.store = store
        self.onFailure = onFailure
    }

    /// Records an entry; it reaches the store within ~20 ms.
    public func record(_ entry: AuditEntry) {
        let first = pending.withLock { p in
            p.append(entry)
            return p.count == 1
        }
        if first { queue.asyncAfter(deadline: .now() + .milliseconds(20)) { self.write() } }
    }

    /// Writes what is recorded so far; returns when the store has it.
    public func flush() {
        queue.sync { write() }
    }

    /// Entries after `seq` (what is recorded so far included).
    public func entries(after seq: Int64, limit: Int) throws -> [AuditEntry] {
        flush()
        return try store.audit(after: seq, limit: limit)
    }

    /// Batches that the store refused (their entries are retried with the next one).
    public var failedWrites: Int { failures.withLock { $0 } }

    /// On the queue.
    private func write() {
        let batch = pending.withLock { p in
            defer { p.removeAll(keepingCapacity: true) }
            return p
        }
        guard !batch.isEmpty else { return }
        do {
            try store.appendAudit(batch)
        } catch {
            // Kept for the next batch (ahead of what came since), and said once per failure.
            failures.withLock { $0 += 1 }
            pending.withLock { $0.insert(contentsOf: batch, at: 0) }
            onFailure(error)
            queue.asyncAfter(deadline: .now() + .seconds(1)) { self.write() }
        }
    }
}
