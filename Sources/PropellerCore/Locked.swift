#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a plain (non priority-inheriting) pthread mutex.
///
/// Used where threads that Swift did not create (libmosquitto's network thread) contend for the
/// same state: the standard library's `Mutex` on Linux is a PI futex whose contended unlock
/// trapped there ("Call to unlock Mutex on a thread which hasn't acquired the lock") in the
/// proxy under load.
///
/// Without Foundation (`NSLock`): a module that imports full Foundation makes every binary that
/// links it load Foundation and its ICU data, which cost `propeller-run` most of its start.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
