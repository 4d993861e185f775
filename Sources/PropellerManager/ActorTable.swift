import Foundation
import PropellerCore

/// Tunables of the actor layer.
public struct ActorConfiguration: Sendable {
    /// Message bodies above this are refused (413).
    public var messageLimit = 1 << 20
    /// Results kept per execution.
    public var resultLimit = 256 << 10
    /// An idle worker above the actor's `min_workers` is retired after this long.
    public var workerIdleTTL: Duration = .seconds(300)
    /// Longest wait of a synchronous message.
    public var maxSyncTimeout: Duration = .seconds(300)

    public init() {}
}

/// The actor layer's part of the ``ClusterState``: actors in the spirit of TACC's Abaco (an
/// actor is an image; each message posted to its inbox runs as an execution on a warm worker, a
/// proplet slot with the image pulled and unpacked and its room reserved in the allocation table
/// beside the tasks). The inbox in the store is the truth a restarted manager resumes from.
public struct ActorTable: Sendable {
    public internal(set) var records: [String: ActorRecord] = [:]
    /// Per actor: queued execution ids, oldest first.
    var queues: [String: MessageQueue] = [:]
    /// Submitted and running executions.
    public internal(set) var executions: [String: ExecutionRecord] = [:]
    public internal(set) var workers: [String: WorkerRecord] = [:]
    /// Stateful actors' states (JSON text).
    public internal(set) var states: [String: String] = [:]
    /// Per worker: heartbeats in a row that did not list it (or showed it idle while busy).
    var misses: [String: Int] = [:]
    /// Per execution: when its run was sent.
    var dispatchedAt: [String: ContinuousClock.Instant] = [:]
    /// Per worker: when it was placed (or adopted after a restart); heartbeats that do not list it
    /// count only after a grace period from then.
    var placedAt: [String: ContinuousClock.Instant] = [:]
    /// Where new worker ids come from (tests make them predictable).
    var workerIDs = WorkerIDs.random

    /// Worker ids: random (a restarted manager must not reuse one), or numbered for tests.
    enum WorkerIDs: Sendable {
        case random
        case numbered(next: Int)

        mutating func next() -> String {
            switch self {
            case .random: return "w-" + UUID().uuidString.lowercased().prefix(13)
            case .numbered(let n):
                self = .numbered(next: n + 1)
                return "w-\(n)"
            }
        }
    }

    /// Workers of `actorID`'s current revision that are not on their way out.
    func liveWorkers(of actorID: String) -> [WorkerRecord] {
        guard let a = records[actorID] else { return [] }
        return workers.values.filter { $0.actorId == actorID && $0.revision == a.revision && $0.status != .shuttingDown }
    }

    /// Queued messages of `actorID`.
    func queued(_ actorID: String) -> Int { queues[actorID]?.count ?? 0 }
}

/// A FIFO of execution ids that does not move its elements on every removal.
struct MessageQueue: Sendable {
    private var items: [String] = []
    private var head = 0

    var count: Int { items.count - head }
    var isEmpty: Bool { count == 0 }
    var ids: ArraySlice<String> { items[head...] }

    mutating func append(_ id: String) { items.append(id) }

    /// Puts a message back at the front (a re-run keeps its place).
    mutating func prepend(_ id: String) {
        if head > 0 {
            head -= 1
            items[head] = id
        } else {
            items.insert(id, at: 0)
        }
    }

    mutating func popFirst() -> String? {
        guard head < items.count else { return nil }
        let id = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return id
    }

    mutating func remove(_ id: String) {
        guard let i = items[head...].firstIndex(of: id) else { return }
        items.remove(at: i)
    }

    mutating func removeAll() -> [String] {
        let all = Array(items[head...])
        items = []
        head = 0
        return all
    }
}
