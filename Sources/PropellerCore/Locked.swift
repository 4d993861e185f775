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

/// A pthread mutex with its condition variable (what `NSCondition` is, without Foundation), for
/// threads that wait for each other outside Swift concurrency.
public final class Condition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a signal; the caller holds the lock.
    public func wait() { pthread_cond_wait(cond, mutex) }
    public func broadcast() { pthread_cond_broadcast(cond) }
}
