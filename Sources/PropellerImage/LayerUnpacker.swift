#if canImport(Glibc)
import Glibc
#endif
import CArchiveLoader
import CFileSystem
import PropellerCore

/// Unpacks OCI/Docker image layers (tar, tar+gzip, tar+zstd) into a root filesystem with
/// libarchive reading and Propeller doing every file-system write itself, so that nothing can be
/// created outside the rootfs:
///
/// - entry names with a `..` component or an absolute path are rejected;
/// - parent directories are resolved with openat2(RESOLVE_IN_ROOT): a symlink in the rootfs,
///   even one an earlier entry planted, resolves inside the rootfs, never on the host;
/// - the last component is never followed (O_NOFOLLOW, `*at` calls on the parent's fd);
/// - hardlink targets are names in the same rootfs, resolved the same way;
/// - device nodes, FIFOs and sockets are skipped (listed in ``Summary/skipped``): a container gets
///   its devices from the runtime, never from an image;
/// - setuid/setgid bits and `security.capability` are dropped unless the image is trusted
///   (``Options/trustSpecialBits``); `trusted.*` and `system.*` attributes are never applied
///   (they would steer overlayfs or ACLs on the host).
///
/// OCI whiteouts: `.wh.NAME` removes NAME from lower layers; `.wh..wh..opq` hides a directory's
/// lower content, wherever the marker sits in the tar, while entries of the same layer stay.
/// Whiteout files themselves never appear in the rootfs.
///
/// The uncompressed stream is hashed as it is read, and must equal the layer's `diff_id`.
/// Any archive error fails the unpack with the layer named; the caller discards a rootfs whose
/// unpack failed (the image store unpacks into a temporary directory and renames on success).
public struct LayerUnpacker: Sendable {
    public struct Options: Sendable {
        /// Keep setuid/setgid bits and file capabilities (only for images you trust).
        public var trustSpecialBits = false
        /// Apply the uid/gid recorded in the layer (needs root; on by default when root).
        public var preserveOwnership = geteuid() == 0
        /// Refuse a layer that would write more than this many bytes of file data.
        public var maxUnpackedBytes: UInt64 = 64 << 30
        /// Stop before the rootfs's filesystem has less than this many bytes, or 1/1000 of its
        /// inodes, left: a few MB of compressed zeros or empty files must not fill the disk
        /// that the proplet's results, journals and other tasks share.
        public var keepFreeBytes: UInt64 = ImageLimits.reserveBytes

        public init() {}
    }

    /// What one unpack did.
    public struct Summary: Sendable {
        /// The digest of the uncompressed tar stream.
        public var diffID: Digest
        public var entries = 0
        public var bytesWritten: UInt64 = 0
        /// Entries not created (device nodes, FIFOs, sockets), by path.
        public var skipped: [String] = []
    }

    public var options: Options

    public init(options: Options = Options()) {
        self.options = options
    }

    /// Unpacks the layer file at `path` on top of `rootfs` (an existing directory).
    /// - Parameters:
    ///   - layerName: how errors name the layer (its digest).
    ///   - expectedDiffID: the config's `rootfs.diff_ids[i]`; a mismatch is an error.
    public func unpack(layerAt path: String, into rootfs: String, layerName: String? = nil, expectedDiffID: Digest? = nil) throws -> Summary {
        let label = layerName ?? path
        let rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootfd >= 0 else { throw PropellerError(.notFound, "unpack layer \(label): rootfs \(rootfs): \(errnoName(errno))") }
        defer { close(rootfd) }

        let stream = try DecompressedStream(path: path, label: label)
        defer { stream.close() }
        guard let tar = pa_archive_read_new() else { throw PropellerError(.internalError, "unpack layer \(label): archive_read_new failed") }
        defer { pa_archive_read_free(tar) }
        pa_archive_read_support_format_tar(tar)
        let opened = pa_archive_read_open(tar, Unmanaged.passUnretained(stream).toOpaque(), nil, decompressedRead, nil)
        guard opened == ARCHIVE_OK else { throw archiveError(tar, label, "open", stream: stream) }

        var state = UnpackState(rootfd: rootfd, label: label, options: options)
        defer { state.forgetCachedParent() }
        var entry: OpaquePointer?
        while true {
            let rc = pa_archive_read_next_header(tar, &entry)
            if rc == ARCHIVE_EOF { break }
            guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN, let entry else { throw archiveError(tar, label, "read header", stream: stream) }
            try state.apply(entry: entry, archive: tar)
        }
        try state.finish()
        // Hash whatever follows the end-of-archive blocks: the diff_id covers the whole stream.
        try stream.drain()
        let diffID = Digest(sha256: stream.finishDigest())
        if let expectedDiffID, expectedDiffID != diffID {
            throw PropellerError(.invalidArgument, "unpack layer \(label): uncompressed content is \(diffID), but the image config says \(expectedDiffID)")
        }
        var summary = Summary(diffID: diffID)
        summary.entries = state.entries
        summary.bytesWritten = state.bytesWritten
        summary.skipped = state.skipped
        return summary
    }

    private func archiveError(_ a: OpaquePointer, _ label: String, _ stage: String, stream: DecompressedStream) -> PropellerError {
        if let upstream = stream.error { return upstream }
        let message = pa_archive_error_string(a).map { String(cString: $0) } ?? "unknown archive error"
        return PropellerError(.invalidArgument, "unpack layer \(label): \(stage): \(message)")
    }
}

/// The symbolic name of an errno value (`ENOENT`), for error messages.
public func errnoName(_ err: Int32) -> String {
    if let name = pf_errno_name(err) { return String(cString: name) }
    return "errno \(err)"
}

/// libarchive read callback for the tar reader: hands out the next decompressed block.
private let decompressedRead: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int = { _, client, buffer in
    guard let client, let buffer else { return -1 }
    return Unmanaged<DecompressedStream>.fromOpaque(client).takeUnretainedValue().next(buffer)
}

/// The uncompressed bytes of a layer (gzip, zstd or none, detected by libarchive's "raw" reader),
/// hashed as they pass.
final class DecompressedStream {
    private let raw: OpaquePointer
    private let hasher = StreamHasher()
    private let label: String
    private(set) var error: PropellerError?
    private var finished = false

    init(path: String, label: String) throws {
        var why = [CChar](repeating: 0, count: 256)
        guard pa_archive_load(&why, why.count) == 0 else {
            throw PropellerError(.unsupported, "unpack layer \(label): \(String(decoding: why.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        guard let raw = pa_archive_read_new() else { throw PropellerError(.internalError, "unpack layer \(label): archive_read_new failed") }
        self.raw = raw
        self.label = label
        pa_archive_read_support_filter_all(raw)
        pa_archive_read_support_format_raw(raw)
        guard pa_archive_read_open_filename(raw, path, 256 * 1024) == ARCHIVE_OK else {
            let message = pa_archive_error_string(raw).map { String(cString: $0) } ?? "cannot open"
            pa_archive_read_free(raw)
            throw PropellerError(.notFound, "unpack layer \(label): \(message)")
        }
        var entry: OpaquePointer?
        guard pa_archive_read_next_header(raw, &entry) == ARCHIVE_OK else {
            let message = pa_archive_error_string(raw).map { String(cString: $0) } ?? "empty layer"
            pa_archive_read_free(raw)
            throw PropellerError(.invalidArgument, "unpack layer \(label): \(message)")
        }
    }

    func close() { pa_archive_read_free(raw) }

    func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        if finished { return 0 }
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        let rc = pa_archive_read_data_block(raw, &block, &size, &offset)
        if rc == ARCHIVE_EOF {
            finished = true
            return 0
        }
        guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN, let block else {
            let message = pa_archive_error_string(raw).map { String(cString: $0) } ?? "decompression failed"
            error = PropellerError(.invalidArgument, "unpack layer \(label): decompress: \(message)")
            return -1
        }
        hasher.update(UnsafeRawBufferPointer(start: block, count: size))
        out.pointee = block
        return size
    }

    func drain() throws {
        var scratch: UnsafeRawPointer?
        while next(&scratch) > 0 {}
        if let error { throw error }
    }

    func finishDigest() -> [UInt8] { hasher.finalize() }
}
