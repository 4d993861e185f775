import Dispatch
import PropellerCore

/// Group commit: the driver stages each event's writes and messages; one writer loop commits
/// everything staged since its last batch in one transaction on the store's own thread, then
/// releases the messages that waited for it. While a batch is being committed the driver goes
/// on applying events, so the next batch carries all of them: a store that takes 10 ms per
/// commit still takes thousands of events per second, and a heartbeat never waits for a disk.
extension TaskService {
    /// What a batch took, to tell afterwards what it wrote.
    struct TakenBatch {
        var batch = StoreBatch()
        var versions: [String: UInt64] = [:]
        var propletVersions: [String: UInt64] = [:]
        var transitions = 0
        var actorWrites = 0
        var newTasks = 0
        var outbox = 0
    }

    var hasStagedWrites: Bool {
        !unsaved.isEmpty || !unsavedTransitions.isEmpty || !unsavedProplets.isEmpty || !unsavedActorWrites.isEmpty || !newTasks.isEmpty
    }

    /// Stages a task's newest version.
    func stage(_ t: TaskRecord) {
        writeVersion += 1
        unsaved[t.id] = t
        unsavedVersions[t.id] = writeVersion
    }

    /// Starts the writer loop unless it runs.
    func startWriting() {
        guard !writing else { return }
        writing = true
        Task { await self.writeBehind() }
    }

    /// Waits until everything staged before this call is committed, or its batch refused;
    /// returns the refusal. Writes refused stay staged (but new tasks are dropped).
    func written() async -> (any Error)? {
        guard writing || hasStagedWrites || !outbox.isEmpty else { return nil }
        let number = batchNumber
        startWriting()
        return await withCheckedContinuation { batchWaiters[number, default: []].append($0) }
    }

    /// A command's writes are committed (or kept for later, without a lease) before it answers;
    /// under a lease, a refused write means another manager may lead: the command fails.
    func commandWritten() async throws {
        _ = await written()
        try requireLease()
    }

    /// Waits for the writes staged so far and refuses when the store did not take them: for
    /// commands that write directly and must come after them.
    func requireWritesTaken() async throws {
        if let error = await written() {
            throw PropellerError(.resourceExhausted, "the store has not taken earlier writes yet (is its disk full?): \(error); try again")
        }
        try requireLease()
    }

    /// Waits until what is staged now is written (a clean shutdown, tests).
    public func flush() async { await settle() }

    /// Waits until what is staged now is written, and what that released (follow-ups) too.
    func settle() async {
        for _ in 0..<8 {
            guard writing || hasStagedWrites || !outbox.isEmpty else { return }
            if await written() != nil { return }
        }
    }

    /// Commits batches until nothing is staged. After a refused batch it stops (the next event,
    /// command or tick starts it again) unless callers already wait for the next one.
    private func writeBehind() async {
        while true {
            let number = batchNumber
            batchNumber += 1
            let taken = takeBatch()
            if taken.batch.isEmpty && taken.outbox == 0 && batchWaiters[number] == nil {
                writing = false
                return
            }
            var failure: (any Error)?
            if lease?.lostReason != nil {
                failure = PropellerError(.unavailable, "this manager no longer leads: nothing more is written")
            } else if !taken.batch.isEmpty {
                let started = ContinuousClock.now
                failure = await writer.commit(taken.batch, to: store)
                logger.trace("batch written", metadata: ["batch": "\(number)", "writes": "\(taken.batch.count)", "messages": "\(taken.outbox)",
                                                         "took": "\((ContinuousClock.now - started).formattedSeconds)"])
            }
            finish(number, taken, failure: failure)
            if failure != nil && batchWaiters[batchNumber] == nil {
                writing = false
                return
            }
        }
    }

    private func takeBatch() -> TakenBatch {
        var taken = TakenBatch()
        taken.newTasks = newTasks.count
        taken.batch.newTasks = newTasks.map(\.task)
        // Changes in the order they were made (a task's rows before a later task's).
        let changed = unsaved.values.sorted { unsavedVersions[$0.id, default: 0] < unsavedVersions[$1.id, default: 0] }
        taken.batch.tasks = changed
        taken.versions = unsavedVersions
        taken.batch.transitions = newTasks.flatMap(\.transitions) + unsavedTransitions
        taken.transitions = unsavedTransitions.count
        taken.batch.proplets = unsavedProplets.values.sorted { $0.version < $1.version }.map(\.record)
        taken.propletVersions = unsavedProplets.mapValues(\.version)
        taken.batch.actorWrites = unsavedActorWrites
        taken.actorWrites = unsavedActorWrites.count
        taken.outbox = outbox.count
        return taken
    }

    private func finish(_ number: UInt64, _ taken: TakenBatch, failure: (any Error)?) {
        newTasks.removeFirst(taken.newTasks)
        if let failure {
            lease?.lose("a store write failed: \(failure)")
            if storeRefusal == nil {
                logger.error("store write failed: kept in memory, written again later", metadata: ["error": "\(failure)", "writes": "\(taken.batch.count)"])
            }
            storeRefusal = "\(failure)"
        } else {
            for (id, version) in taken.versions where unsavedVersions[id] == version {
                unsaved[id] = nil
                unsavedVersions[id] = nil
            }
            for (id, version) in taken.propletVersions where unsavedProplets[id]?.version == version {
                unsavedProplets[id] = nil
            }
            unsavedTransitions.removeFirst(taken.transitions)
            unsavedActorWrites.removeFirst(taken.actorWrites)
            if storeRefusal != nil {
                logger.notice("store writes caught up", metadata: ["writes": "\(taken.batch.count)"])
                storeRefusal = nil
            }
        }
        release(taken.outbox, committed: failure == nil)
        for waiter in batchWaiters.removeValue(forKey: number) ?? [] { waiter.resume(returning: failure) }
    }
}

/// The thread that runs the store's commits, off the cooperative pool (a commit blocks until the
/// database has it durable).
final class StoreWriter: Sendable {
    private let queue = DispatchQueue(label: "propeller.store-writer")

    /// Commits `batch`; the error when the store refused it.
    func commit(_ batch: StoreBatch, to store: any ManagerStore) async -> (any Error)? {
        await withCheckedContinuation { continuation in
            queue.async {
                do {
                    try store.commit(batch)
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
        }
    }
}
