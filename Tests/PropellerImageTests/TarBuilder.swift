import CArchive
import Foundation
import PropellerCore

/// Writes tar layers for tests with libarchive, including the hostile entries no well-behaved
/// tool would produce.
struct TarBuilder {
    enum Compression { case none, gzip, zstd }

    struct Entry {
        var path: String
        var type: mode_t
        var data = Data()
        var mode: mode_t = 0o644
        var uid: Int64 = 0
        var gid: Int64 = 0
        var mtime: Int = 1_700_000_000
        var linkTarget: String?
        var hardlink: String?
        var xattrs: [String: Data] = [:]
        var rdev: dev_t = 0
    }

    var entries: [Entry] = []

    mutating func file(_ path: String, _ contents: String = "", mode: mode_t = 0o644, uid: Int64 = 0, gid: Int64 = 0, xattrs: [String: Data] = [:]) {
        entries.append(Entry(path: path, type: 0o100000, data: Data(contents.utf8), mode: mode, uid: uid, gid: gid, xattrs: xattrs))
    }

    mutating func file(_ path: String, bytes: Data) {
        entries.append(Entry(path: path, type: 0o100000, data: bytes))
    }

    mutating func dir(_ path: String, mode: mode_t = 0o755) {
        entries.append(Entry(path: path, type: 0o040000, mode: mode))
    }

    mutating func symlink(_ path: String, to target: String) {
        entries.append(Entry(path: path, type: 0o120000, mode: 0o777, linkTarget: target))
    }

    mutating func hardlink(_ path: String, to target: String) {
        entries.append(Entry(path: path, type: 0o100000, hardlink: target))
    }

    mutating func charDevice(_ path: String) {
        entries.append(Entry(path: path, type: 0o020000, rdev: (1 << 8) | 1))  // makedev(1, 1)
    }

    mutating func fifo(_ path: String) {
        entries.append(Entry(path: path, type: 0o010000))
    }

    /// coreutils' sha256sum: an independent implementation, and fast in debug builds.
    static func sha256sum(_ path: String) throws -> Digest {
        let p = Process()
        let out = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return try Digest(validating: "sha256:" + String(text.prefix(64)))
    }

    /// Writes the layer and returns the sha256 of the uncompressed tar (its diff_id).
    @discardableResult
    func write(to path: String, compression: Compression = .gzip) throws -> Digest {
        // First the plain tar (for the diff_id), then compress it with libarchive's raw writer.
        let tarPath = compression == .none ? path : path + ".tar"
        guard let a = archive_write_new() else { throw PropellerError(.internalError, "archive_write_new") }
        archive_write_set_format_pax_restricted(a)
        archive_write_add_filter_none(a)
        guard archive_write_open_filename(a, tarPath) == ARCHIVE_OK else { throw PropellerError(.internalError, "open \(tarPath)") }
        for e in entries {
            guard let entry = archive_entry_new() else { continue }
            archive_entry_set_pathname(entry, e.path)
            archive_entry_set_filetype(entry, UInt32(e.type))
            archive_entry_set_perm(entry, e.mode)
            archive_entry_set_uid(entry, e.uid)
            archive_entry_set_gid(entry, e.gid)
            archive_entry_set_mtime(entry, time_t(e.mtime), 0)
            if let t = e.linkTarget { archive_entry_set_symlink(entry, t) }
            if let h = e.hardlink { archive_entry_set_hardlink(entry, h) }
            if e.rdev != 0 { archive_entry_set_rdev(entry, e.rdev) }
            for (name, value) in e.xattrs {
                value.withUnsafeBytes { archive_entry_xattr_add_entry(entry, name, $0.baseAddress, $0.count) }
            }
            archive_entry_set_size(entry, e.type == 0o100000 && e.hardlink == nil ? Int64(e.data.count) : 0)
            archive_write_header(a, entry)
            if !e.data.isEmpty { _ = e.data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) } }
            archive_entry_free(entry)
        }
        archive_write_close(a)
        archive_write_free(a)
        let digest = try Self.sha256sum(tarPath)
        guard compression != .none else { return digest }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", compression == .gzip ? "gzip -c '\(tarPath)' > '\(path)'" : "zstd -q -c '\(tarPath)' > '\(path)'"]
        try p.run()
        p.waitUntilExit()
        try FileManager.default.removeItem(atPath: tarPath)
        guard p.terminationStatus == 0 else { throw PropellerError(.internalError, "compressing \(path) failed") }
        return digest
    }
}
