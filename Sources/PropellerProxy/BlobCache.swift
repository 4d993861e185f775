#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage

/// The proxy's verified blobs on disk (a content store), capped in size: when a new blob pushes
/// the total over the cap, the least recently used blobs go (never one being streamed).
final class BlobCache: @unchecked Sendable {
    let store: ContentStore
    let capBytes: UInt64
    private let lock = NSLock()
    private var pinned: [Digest: Int] = [:]

    init(directory: String, capBytes: UInt64) throws {
        store = try ContentStore(root: directory)
        self.capBytes = capBytes
    }

    func contains(_ digest: Digest) -> Bool { store.contains(digest) }

    /// Marks a blob as used now (its mtime orders the LRU).
    func touch(_ digest: Digest) {
        _ = utimensat(AT_FDCWD, store.path(for: digest), nil, 0)
    }

    func pin(_ digest: Digest) {
        lock.lock()
        pinned[digest, default: 0] += 1
        lock.unlock()
    }

    func unpin(_ digest: Digest) {
        lock.lock()
        if let n = pinned[digest] { pinned[digest] = n > 1 ? n - 1 : nil }
        lock.unlock()
    }

    /// Removes least recently used, unpinned blobs until the cache fits its cap. Returns how
    /// many went.
    @discardableResult
    func evict() -> Int {
        var entries: [(Digest, UInt64, Int)] = []
        var total: UInt64 = 0
        for d in store.list() {
            var st = stat()
            guard stat(store.path(for: d), &st) == 0 else { continue }
            entries.append((d, UInt64(st.st_size), st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec))
            total += UInt64(st.st_size)
        }
        guard total > capBytes else { return 0 }
        lock.lock()
        let busy = Set(pinned.keys)
        lock.unlock()
        var removed = 0
        for (d, size, _) in entries.sorted(by: { $0.2 < $1.2 }) where total > capBytes && !busy.contains(d) {
            try? store.remove(d)
            total -= size
            removed += 1
        }
        return removed
    }
}
