#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import Dispatch
import Synchronization

/// Network namespaces made ahead of time, so a container start does not pay for creating one
/// (about 0.75 ms here, the largest single cost of a start). Each namespace is used by exactly
/// one container and never reused; the pool refills in the background after every take.
/// Containers with `--network host` do not use it.
public final class NetworkNamespacePool: Sendable {
    private let target: Int
    private let ready = Mutex<[Int32]>([])
    private let queue = DispatchQueue(label: "propeller.netns-pool")

    /// - Parameter size: how many namespaces to keep ready.
    public init(size: Int) {
        target = max(0, size)
        refill()
    }

    deinit {
        ready.withLock { fds in
            for fd in fds { close(fd) }
            fds.removeAll()
        }
    }

    /// A ready namespace, owned by the caller from now on, or nil when the pool is empty (the
    /// caller then creates one the ordinary way).
    func take() -> Int32? {
        let fd = ready.withLock { $0.popLast() }
        refill()
        return fd
    }

    /// Namespaces ready right now.
    public var available: Int { ready.withLock { $0.count } }

    /// Fills the pool synchronously (for a daemon at startup, or a benchmark).
    public func fill() {
        queue.sync { fillOnQueue() }
    }

    /// All filling happens on one serial queue, so two fills never overshoot the target.
    private func fillOnQueue() {
        while ready.withLock({ $0.count }) < target {
            let fd = pl_netns_create()
            if fd < 0 { return }
            ready.withLock { $0.append(fd) }
        }
    }

    private func refill() {
        guard target > 0 else { return }
        queue.async { [self] in fillOnQueue() }
    }
}
