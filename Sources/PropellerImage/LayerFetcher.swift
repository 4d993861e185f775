#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// The downloads of an image's layers, done in order on another thread, as the unpacker sees
/// them: it waits for layer `i` before unpacking it, and stops the downloads when it fails.
final class LayerFetcher: @unchecked Sendable {
    // Guarded by `condition`.
    private var results: [Result<Void, any Error>?]
    private var stop = false
    private var ended = false
    private let condition = Condition()

    init(count: Int) {
        results = Array(repeating: nil, count: count)
        if count == 0 { ended = true }
    }

    /// Runs the downloads on a thread of their own (detached; `cancelAndWait` waits for them).
    func start(_ downloads: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Downloads(downloads)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { context in
            guard let context else { return nil }
            Unmanaged<Downloads>.fromOpaque(context).takeRetainedValue().body()
            return nil
        }, context)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<Downloads>.fromOpaque(context).takeRetainedValue().body()  // no thread: here and now
        }
    }

    private final class Downloads {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Whether the unpacker no longer wants the downloads.
    var cancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stop
    }

    /// Records how layer `i` ended; a failure or the last layer ends the downloads.
    func finish(_ i: Int, _ result: Result<Void, any Error>) {
        condition.lock()
        results[i] = result
        if case .failure = result { ended = true }
        if i == results.count - 1 { ended = true }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until layer `i` is stored; throws its download's error (or that of an earlier one).
    func wait(_ i: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        while results[i] == nil {
            if ended, let failed = results.lazy.compactMap({ $0 }).first(where: { if case .failure = $0 { true } else { false } }) {
                try failed.get()
            }
            condition.wait()
        }
        try results[i]?.get()
    }

    /// Asks the downloads to stop after the current blob and waits until they have.
    func cancelAndWait() {
        condition.lock()
        stop = true
        while !ended { condition.wait() }
        condition.unlock()
    }
}
