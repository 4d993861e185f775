import PropellerCore

/// One `logs --follow` reader's queue of log blocks, bounded by bytes rather than by blocks: a
/// reader that does not keep up (or a client that stops reading) loses the blocks that do not
/// fit, and sees the gap in their offsets, instead of growing the manager by up to a thousand
/// blocks of any size per reader.
struct LogFollower: Sendable {
    /// Bytes of log data one reader may have waiting.
    static let queueBytes = 4 << 20

    let continuation: AsyncStream<LogBlock>.Continuation
    let queued: Locked<Int>

    /// Queues `block` unless the reader already has `queueBytes` waiting; false when dropped.
    @discardableResult
    func offer(_ block: LogBlock) -> Bool {
        let size = block.data.utf8.count
        let admitted = queued.withLock { bytes in
            guard bytes == 0 || bytes + size <= Self.queueBytes else { return false }
            bytes += size
            return true
        }
        if admitted { continuation.yield(block) }
        return admitted
    }

    func finish() { continuation.finish() }

    /// The reader's side: the blocks, each given back to the budget as it is taken.
    static func make() -> (LogFollower, LogFollowStream) {
        let (stream, continuation) = AsyncStream<LogBlock>.makeStream()
        let queued = Locked(0)
        return (LogFollower(continuation: continuation, queued: queued), LogFollowStream(stream: stream, queued: queued))
    }
}

/// The log blocks a follower receives (see ``LogFollower``).
public struct LogFollowStream: AsyncSequence, Sendable {
    public typealias Element = LogBlock
    let stream: AsyncStream<LogBlock>
    let queued: Locked<Int>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<LogBlock>.AsyncIterator
        let queued: Locked<Int>

        public mutating func next() async -> LogBlock? {
            guard let block = await base.next() else { return nil }
            queued.withLock { $0 -= block.data.utf8.count }
            return block
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), queued: queued) }
}
