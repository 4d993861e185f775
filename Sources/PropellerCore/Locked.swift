import Foundation

/// A value guarded by a plain (non priority-inheriting) pthread mutex.
///
/// Used where threads that Swift did not create (libmosquitto's network thread) contend for the
/// same state: the standard library's `Mutex` on Linux is a PI futex whose contended unlock
/// trapped there ("Call to unlock Mutex on a thread which hasn't acquired the lock") in the
/// proxy under load.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
