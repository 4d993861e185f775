import PropellerCore

/// Messages received and not yet read, bounded in bytes: what the broker delivers faster than
/// the reader takes it waits here up to `limitBytes`, and what would go over is dropped and
/// counted. Without a bound one task printing in a loop grew the manager by half a gigabyte in
/// seconds. Nothing that matters is lost for good: proplets resend results until acknowledged,
/// heartbeats come again, the proxy resends chunks a proplet asks for.
///
/// A client has two: `messages` for everything, and `bulkMessages` for the topics the
/// configuration calls bulk (task logs at the manager), so a flood of those can neither crowd
/// out nor delay heartbeats and results.
public struct MQTTInbox: AsyncSequence, Sendable {
    public typealias Element = MQTTMessage

    final class Budget: Sendable {
        struct Counters {
            var queuedBytes = 0
            var dropped = 0
        }
        let limitBytes: Int
        let counters = Locked(Counters())
        init(limitBytes: Int) { self.limitBytes = limitBytes }

        /// Whether a message of `size` bytes may be queued (and counts it if so).
        func admit(_ size: Int) -> Bool {
            counters.withLock { c in
                guard c.queuedBytes + size <= limitBytes else {
                    c.dropped += 1
                    return false
                }
                c.queuedBytes += size
                return true
            }
        }

        func release(_ size: Int) { counters.withLock { $0.queuedBytes -= size } }
    }

    let stream: AsyncStream<MQTTMessage>
    let continuation: AsyncStream<MQTTMessage>.Continuation
    let budget: Budget

    init(limitBytes: Int) {
        let (stream, continuation) = AsyncStream<MQTTMessage>.makeStream(bufferingPolicy: .unbounded)
        self.stream = stream
        self.continuation = continuation
        budget = Budget(limitBytes: limitBytes)
    }

    /// Queues `message` unless that would go over the budget (the message is then dropped).
    func deliver(_ message: MQTTMessage) {
        let size = Self.cost(message)
        guard budget.admit(size) else { return }
        if case .terminated = continuation.yield(message) { budget.release(size) }
    }

    /// Bytes a queued message holds: its payload, its topic and some bookkeeping.
    static func cost(_ m: MQTTMessage) -> Int { m.payload.count + m.topic.utf8.count + 64 }

    /// Messages dropped because the reader was too far behind.
    public var droppedMessages: Int { budget.counters.withLock { $0.dropped } }
    /// Bytes waiting to be read.
    public var queuedBytes: Int { budget.counters.withLock { $0.queuedBytes } }

    func finish() { continuation.finish() }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<MQTTMessage>.AsyncIterator
        let budget: Budget

        public mutating func next() async -> MQTTMessage? {
            guard let m = await base.next() else { return nil }
            budget.release(MQTTInbox.cost(m))
            return m
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), budget: budget) }
}
