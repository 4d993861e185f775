import Dispatch

/// Work started on another thread now, whose result is collected later with ``value()``: how a
/// one-shot command overlaps two independent steps that wait on different things (the kernel
/// and the CPU) on a machine with more than one core.
final class Concurrently<T: Sendable>: @unchecked Sendable {
    // Written once by the worker before `done.leave()`, read only after `done.wait()`.
    private var result: Result<T, any Error> = .failure(CancellationError())
    private let done = DispatchGroup()

    init(_ body: @escaping @Sendable () throws -> T) {
        done.enter()
        DispatchQueue.global().async {
            self.result = Result { try body() }
            self.done.leave()
        }
    }

    /// Waits for the work and returns its result (or throws its error).
    func value() throws -> T {
        done.wait()
        return try result.get()
    }

    /// Waits for the work, ignoring its result.
    func finish() { done.wait() }
}
