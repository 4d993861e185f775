#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore

/// Work started on a thread of its own now, whose result is collected later with ``value()``:
/// how a one-shot command overlaps two independent steps on a machine with more than one core.
///
/// The thread starts on another CPU than the caller's (`pl_start_helper_thread`), and it is not
/// a Dispatch queue: Dispatch starts its workers lazily, and a new thread left on its creator's
/// CPU waited there for over a millisecond while the creator worked (2-vCPU VM), as long as the
/// work it was meant to overlap.
public final class Concurrently<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var thread: pthread_t?
    }
    private let state = Locked(State())

    public init(_ body: @escaping @Sendable () throws -> T) {
        let state = self.state
        let started = startThread {
            let result = Result { try body() }
            state.withLock { $0.result = result }
        }
        if let started {
            state.withLock { $0.thread = started }
        } else {
            // No thread to be had: do the work here and now.
            let result = Result { try body() }
            state.withLock { $0.result = result }
        }
    }

    /// Waits for the work and returns its result (or throws its error).
    public func value() throws -> T {
        finish()
        guard let result = state.withLock({ $0.result }) else { throw CancellationError() }
        return try result.get()
    }

    /// Waits for the work, ignoring its result.
    public func finish() {
        let thread = state.withLock { s -> pthread_t? in
            defer { s.thread = nil }
            return s.thread
        }
        if let thread { pthread_join(thread, nil) }
    }
}

private final class ThreadBody {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Starts `body` on a new joinable thread; nil when none could be made.
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let rc = pl_start_helper_thread(&thread, { context in
        guard let context else { return nil }
        Unmanaged<ThreadBody>.fromOpaque(context).takeRetainedValue().run()
        return nil
    }, context)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        return nil
    }
    return thread
}
