#if canImport(Glibc)
import Glibc
#endif
import CFileSystem
import PropellerCore

/// Blobs by digest under `<root>/blobs/sha256/<hex>`, as in an OCI image layout.
///
/// A blob only ever appears under its name after its bytes hashed to that name: writers stream
/// into `<root>/ingest/`, hash as they go, and rename on success. Readers can therefore trust
/// any blob they find without hashing it again.
public struct ContentStore: Sendable {
    public let root: String

    /// Opens (creating if needed) a store at `root`.
    public init(root: String) throws {
        self.root = root
        for dir in [root, root + "/blobs", root + "/blobs/sha256", root + "/ingest"] {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw PropellerError(.systemCall, "content store: create \(dir): \(errnoName(errno))")
            }
        }
    }

    public func path(for digest: Digest) -> String { root + "/blobs/sha256/" + digest.hex }

    public func contains(_ digest: Digest) -> Bool { access(path(for: digest), F_OK) == 0 }

    /// Size in bytes of a stored blob, or nil.
    public func size(of digest: Digest) -> UInt64? {
        var st = stat()
        return stat(path(for: digest), &st) == 0 ? UInt64(st.st_size) : nil
    }

    /// A writer for a blob expected to have `digest` (and `size`, when known).
    public func writer(for digest: Digest, size: UInt64? = nil) throws -> BlobWriter {
        try BlobWriter(store: self, expected: digest, expectedSize: size)
    }

    /// Stores the contents of the file at `source` (copied, hashed on the way).
    @discardableResult
    public func ingest(file source: String, as digest: Digest, size: UInt64? = nil) throws -> String {
        if contains(digest) { return path(for: digest) }
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PropellerError(.notFound, "content store: open \(source): \(errnoName(errno))") }
        defer { close(fd) }
        let writer = try self.writer(for: digest, size: size)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                writer.abort()
                throw PropellerError(.systemCall, "content store: read \(source): \(errnoName(errno))")
            }
            if n == 0 { break }
            try buffer.withUnsafeBytes { try writer.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return try writer.commit()
    }

    /// Moves a file of the ingest directory into the store as `digest`, once its content hashes
    /// to it: `hashed` is the digest the caller computed over exactly the bytes it wrote (nil:
    /// the file is read and hashed here). No copy: the file is synced and renamed.
    @discardableResult
    public func adopt(file source: String, as digest: Digest, hashed: Digest? = nil) throws -> String {
        let actual = try hashed ?? Digest(sha256: Checksum.sha256(file: source))
        guard actual == digest else {
            throw PropellerError(.invalidArgument, "blob \(digest): digest mismatch, the content hashes to \(actual)")
        }
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PropellerError(.notFound, "content store: open \(source): \(errnoName(errno))") }
        defer { close(fd) }
        let path = self.path(for: digest)
        guard fsync(fd) == 0, rename(source, path) == 0 else {
            throw PropellerError(.systemCall, "content store: store \(digest): \(errnoName(errno))")
        }
        return path
    }

    /// Starts writing a just-written range of an ingest file to disk without waiting, so that
    /// the fsync of `adopt` finds little left to do (the disk works while the network does).
    public static func startWriteback(fd: Int32, offset: UInt64, length: Int) {
        _ = pf_start_writeback(fd, Int64(offset), Int64(length))
    }

    /// Removes a blob; removing one that is not there is fine.
    public func remove(_ digest: Digest) throws {
        if unlink(path(for: digest)) != 0 && errno != ENOENT {
            throw PropellerError(.systemCall, "content store: remove \(digest): \(errnoName(errno))")
        }
    }

    /// Every stored digest.
    public func list() -> [Digest] {
        guard let dir = opendir(root + "/blobs/sha256") else { return [] }
        defer { closedir(dir) }
        var out: [Digest] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let d = try? Digest(validating: "sha256:" + name) { out.append(d) }
        }
        return out
    }
}

/// Streams one blob into the store's ingest directory, hashing it; ``commit()`` renames it into
/// place only if the digest (and size) match.
public final class BlobWriter {
    let store: ContentStore
    let expected: Digest
    let expectedSize: UInt64?
    let tempPath: String
    private var fd: Int32
    private let hasher = StreamHasher()
    public private(set) var written: UInt64 = 0

    init(store: ContentStore, expected: Digest, expectedSize: UInt64?) throws {
        self.store = store
        self.expected = expected
        self.expectedSize = expectedSize
        tempPath = store.root + "/ingest/" + expected.hex + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PropellerError(.systemCall, "content store: create \(tempPath): \(errnoName(errno))") }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(tempPath)
        }
    }

    /// The most bytes a blob of unknown size may have (an endless blob from a hostile registry
    /// must not fill the disk).
    public static let unsizedLimit: UInt64 = 16 << 30

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw PropellerError(.internalError, "blob \(expected): write after commit") }
        written += UInt64(bytes.count)
        if let expectedSize, written > expectedSize {
            throw PropellerError(.invalidArgument, "blob \(expected): more than the expected \(expectedSize) bytes")
        }
        if expectedSize == nil, written > Self.unsizedLimit {
            throw PropellerError(.invalidArgument, "blob \(expected): more than \(Self.unsizedLimit >> 30) GiB without a size given")
        }
        hasher.update(bytes)
        var done = 0
        while done < bytes.count {
            guard let base = bytes.baseAddress else { return }
            let n = Glibc.write(fd, base + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw PropellerError(.systemCall, "content store: write \(tempPath): \(errnoName(errno))") }
            done += n
        }
    }

    /// Verifies and moves the blob into place; returns its path.
    public func commit() throws -> String {
        guard fd >= 0 else { throw PropellerError(.internalError, "blob \(expected): committed twice") }
        let digest = Digest(sha256: hasher.finalize())
        let path = store.path(for: expected)
        defer {
            close(fd)
            fd = -1
            unlink(tempPath)
        }
        if let expectedSize, written != expectedSize {
            throw PropellerError(.invalidArgument, "blob \(expected): size \(written) bytes, expected \(expectedSize)")
        }
        guard digest == expected else {
            throw PropellerError(.invalidArgument, "blob \(expected): digest mismatch, the content hashes to \(digest)")
        }
        guard fsync(fd) == 0, rename(tempPath, path) == 0 else {
            throw PropellerError(.systemCall, "content store: store \(expected): \(errnoName(errno))")
        }
        return path
    }

    /// Discards what was written.
    public func abort() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(tempPath)
    }
}
