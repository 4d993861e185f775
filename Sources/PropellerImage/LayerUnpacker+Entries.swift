#if canImport(Glibc)
import Glibc
#endif
import CArchiveLoader
import CFileSystem
import PropellerCore

/// The per-layer work of ``LayerUnpacker``: one entry at a time, every write relative to a
/// directory fd that was resolved inside the rootfs.
struct UnpackState {
    let rootfd: Int32
    let label: String
    let options: LayerUnpacker.Options
    var entries = 0
    var bytesWritten: UInt64 = 0
    /// When the filesystem's free space is looked at next (see ``checkFreeSpace()``).
    var nextSpaceCheck: (bytes: UInt64, entries: Int) = (0, 0)
    var skipped: [String] = []
    /// Paths this layer created; opaque whiteouts keep them.
    var created = Set<String>()
    /// Directory mtimes, applied after the layer (writing children changes them).
    var directoryTimes: [(String, timespec)] = []
    /// The parent directory of the previous regular file, reused while regular files follow each
    /// other in it; anything else (directories, links, whiteouts, replacements) forgets it.
    var cachedParent: (path: String, fd: Int32)?
    let ownUID = geteuid()
    let ownGID = getegid()

    init(rootfd: Int32, label: String, options: LayerUnpacker.Options) {
        self.rootfd = rootfd
        self.label = label
        self.options = options
    }

    func fail(_ path: String, _ message: String, code: PropellerError.Code = .invalidArgument) -> PropellerError {
        PropellerError(code, "unpack layer \(label): \(path): \(message)")
    }

    /// Splits an entry name into components: `./a//b/` → [a, b]. Absolute names and `..` are refused.
    func components(_ name: String) throws -> [String] {
        if name.hasPrefix("/") { throw fail(name, "absolute path in layer") }
        var out: [String] = []
        for part in name.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw fail(name, "path leaves the rootfs (\"..\")") }
            out.append(String(part))
        }
        return out
    }

    /// Refuses to go on once the filesystem under the rootfs is down to
    /// `options.keepFreeBytes`, or 1/1000 of its inodes; looked at every 8 MiB written and
    /// every 1,024 entries, so a layer overshoots by at most that much.
    mutating func checkFreeSpace(path: String) throws {
        guard bytesWritten >= nextSpaceCheck.bytes || entries >= nextSpaceCheck.entries else { return }
        nextSpaceCheck = (bytesWritten + (8 << 20), entries + 1024)
        var fs = statvfs()
        guard fstatvfs(rootfd, &fs) == 0 else { return }
        let free = UInt64(fs.f_bavail) &* UInt64(fs.f_frsize)
        if free < options.keepFreeBytes {
            throw fail(path, "the filesystem has \(ByteSize(bytes: free)) left (at least \(ByteSize(bytes: options.keepFreeBytes)) is kept free), after \(ByteSize(bytes: bytesWritten)) of this layer: refused",
                       code: .resourceExhausted)
        }
        if fs.f_files > 0, UInt64(fs.f_favail) < UInt64(fs.f_files) / 1000 {
            throw fail(path, "the filesystem has \(fs.f_favail) of \(fs.f_files) inodes left, after \(entries) entries of this layer: refused", code: .resourceExhausted)
        }
    }

    mutating func apply(entry: OpaquePointer, archive: OpaquePointer) throws {
        entries += 1
        let rawName = pa_archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
        let parts = try components(rawName)
        try checkFreeSpace(path: rawName)
        guard let name = parts.last else { return }  // the root itself
        let parent = Array(parts.dropLast())
        let path = parts.joined(separator: "/")

        if name.hasPrefix(".wh.") {
            try whiteout(name: name, parent: parent, path: path)
            return
        }

        let type = pa_archive_entry_filetype(entry) & UInt32(fileTypeMask)
        let hardlink = pa_archive_entry_hardlink(entry).map { String(cString: $0) }
        if hardlink == nil && type != UInt32(regularFile) && type != UInt32(directoryType) && type != UInt32(symlinkType) {
            skipped.append(path)  // device node, FIFO or socket
            return
        }

        let isPlainFile = hardlink == nil && type == UInt32(regularFile)
        let parentPath = parent.joined(separator: "/")
        let parentfd: Int32
        var ownsParent = true
        if isPlainFile, let cached = cachedParent, cached.path == parentPath {
            parentfd = cached.fd
            ownsParent = false
        } else {
            forgetCachedParent()
            parentfd = try openDirectory(parent, create: true, for: path)
        }
        defer { if ownsParent { close(parentfd) } }
        // Removing an entry inside parentfd cannot invalidate parentfd itself, the only cached fd.
        _ = try replaceExisting(parentfd, name, path: path, keepDirectory: type == UInt32(directoryType) && hardlink == nil)
        created.insert(path)
        if isPlainFile && ownsParent {
            cachedParent = (parentPath, parentfd)
            ownsParent = false
        }

        if let hardlink {
            let target = try components(hardlink)
            guard let targetName = target.last else { throw fail(path, "hardlink to the rootfs itself") }
            let targetParent = try openDirectory(Array(target.dropLast()), create: false, for: path)
            defer { close(targetParent) }
            guard linkat(targetParent, targetName, parentfd, name, 0) == 0 else {
                throw fail(path, "hardlink to \(hardlink): \(errnoName(errno))")
            }
            return
        }

        switch type {
        case UInt32(directoryType):
            if mkdirat(parentfd, name, 0o700) != 0 && errno != EEXIST { throw fail(path, "mkdir: \(errnoName(errno))") }
            let fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw fail(path, "open directory: \(errnoName(errno))") }
            defer { close(fd) }
            try applyMetadata(fd: fd, entry: entry, path: path)
            directoryTimes.append((path, mtime(entry)))
        case UInt32(symlinkType):
            let target = pa_archive_entry_symlink(entry).map { String(cString: $0) } ?? ""
            guard symlinkat(target, parentfd, name) == 0 else { throw fail(path, "symlink: \(errnoName(errno))") }
            if options.preserveOwnership && fchownat(parentfd, name, pa_archive_entry_uid(entry).asID, pa_archive_entry_gid(entry).asID, AT_SYMLINK_NOFOLLOW) != 0 {
                throw fail(path, "chown: \(errnoName(errno))")
            }
            var times = [mtime(entry), mtime(entry)]
            _ = utimensat(parentfd, name, &times, AT_SYMLINK_NOFOLLOW)
        default:
            let fd = openat(parentfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw fail(path, "create: \(errnoName(errno))") }
            defer { close(fd) }
            let written = try writeData(fd: fd, archive: archive, path: path)
            // A sparse file ends in a hole the data blocks did not reach.
            let size = pa_archive_entry_size(entry)
            if size > written && ftruncate(fd, off_t(size)) != 0 { throw fail(path, "truncate: \(errnoName(errno))") }
            try applyMetadata(fd: fd, entry: entry, path: path)
            var times = [mtime(entry), mtime(entry)]
            _ = futimens(fd, &times)
        }
    }

    /// Copies the entry's data blocks at their offsets (holes in sparse files stay holes).
    /// Returns the end offset of the last data written.
    mutating func writeData(fd: Int32, archive: OpaquePointer, path: String) throws -> Int64 {
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        var end: Int64 = 0
        while true {
            let rc = pa_archive_read_data_block(archive, &block, &size, &offset)
            if rc == ARCHIVE_EOF { return end }
            guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN else {
                let message = pa_archive_error_string(archive).map { String(cString: $0) } ?? "read error"
                throw fail(path, message)
            }
            guard let block, size > 0 else { continue }
            bytesWritten += UInt64(size)
            end = max(end, Int64(offset) + Int64(size))
            if bytesWritten > options.maxUnpackedBytes {
                throw fail(path, "layer unpacks to more than \(ByteSize(bytes: options.maxUnpackedBytes)), refused", code: .resourceExhausted)
            }
            try checkFreeSpace(path: path)
            var done = 0
            while done < size {
                let n = pwrite(fd, block + done, size - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw fail(path, "write: \(errnoName(errno))") }
                done += n
            }
        }
    }

    func mtime(_ entry: OpaquePointer) -> timespec {
        timespec(tv_sec: time_t(pa_archive_entry_mtime(entry)), tv_nsec: Int(pa_archive_entry_mtime_nsec(entry)))
    }

    /// Owner, then mode (chown clears setuid bits), then extended attributes.
    func applyMetadata(fd: Int32, entry: OpaquePointer, path: String) throws {
        let uid = pa_archive_entry_uid(entry).asID, gid = pa_archive_entry_gid(entry).asID
        // A new file already belongs to us: skip the syscall when that is what the layer says.
        if options.preserveOwnership && (uid != ownUID || gid != ownGID) && fchown(fd, uid, gid) != 0 {
            throw fail(path, "chown: \(errnoName(errno))")
        }
        var mode = mode_t(pa_archive_entry_perm(entry)) & 0o7777
        if !options.trustSpecialBits { mode &= ~mode_t(0o6000) }  // setuid, setgid
        if fchmod(fd, mode) != 0 { throw fail(path, "chmod: \(errnoName(errno))") }

        pa_archive_entry_xattr_reset(entry)
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while pa_archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK {
            guard let name else { continue }
            let attr = String(cString: name)
            let allowed = attr.hasPrefix("user.") || (attr.hasPrefix("security.") && (attr != "security.capability" || options.trustSpecialBits))
            guard allowed else { continue }
            // A filesystem without xattr support loses them, as tar does; nothing else is tolerated.
            if pf_fsetxattr(fd, attr, value, UInt(size)) != 0 && errno != ENOTSUP && errno != EOPNOTSUPP {
                throw fail(path, "set \(attr): \(errnoName(errno))")
            }
        }
    }

    /// Removes whatever is at `name` unless it is a directory that should stay. Returns whether
    /// something was removed.
    func replaceExisting(_ parentfd: Int32, _ name: String, path: String, keepDirectory: Bool) throws -> Bool {
        var st = stat()
        guard fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return false }
            throw fail(path, "stat: \(errnoName(errno))")
        }
        if keepDirectory && (st.st_mode & fileTypeMask) == directoryType { return false }
        try removeTree(parentfd, name, path: path)
        return true
    }

    mutating func forgetCachedParent() {
        if let cached = cachedParent { close(cached.fd) }
        cachedParent = nil
    }

    /// rm -rf of `name` in `dirfd`, never following a symlink.
    func removeTree(_ dirfd: Int32, _ name: String, path: String) throws {
        var st = stat()
        guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return }
            throw fail(path, "stat: \(errnoName(errno))")
        }
        if (st.st_mode & fileTypeMask) == directoryType {
            let fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw fail(path, "open: \(errnoName(errno))") }
            do {
                for child in try listDirectory(fd, path: path) {
                    try removeTree(fd, child, path: path + "/" + child)
                }
            } catch {
                close(fd)
                throw error
            }
            close(fd)
            guard unlinkat(dirfd, name, AT_REMOVEDIR) == 0 else { throw fail(path, "rmdir: \(errnoName(errno))") }
        } else {
            guard unlinkat(dirfd, name, 0) == 0 || errno == ENOENT else { throw fail(path, "unlink: \(errnoName(errno))") }
        }
    }

    func listDirectory(_ fd: Int32, path: String) throws -> [String] {
        let dupfd = dup(fd)
        guard dupfd >= 0, let dir = fdopendir(dupfd) else { throw fail(path, "list: \(errnoName(errno))") }
        return directoryNames(of: dir)
    }

    /// Opens the directory `parts` inside the rootfs (symlinks resolve inside it), creating
    /// missing directories when asked.
    func openDirectory(_ parts: [String], create: Bool, for path: String) throws -> Int32 {
        if parts.isEmpty {
            let fd = dup(rootfd)
            guard fd >= 0 else { throw fail(path, "dup: \(errnoName(errno))") }
            return fd
        }
        let joined = parts.joined(separator: "/")
        let fd = pf_open_in_root(rootfd, joined, O_RDONLY | O_DIRECTORY, 0, 0)
        if fd >= 0 { return fd }
        guard errno == ENOENT, create else {
            throw fail(path, "parent directory \(joined): \(errnoName(errno))")
        }
        // Create the missing directories one at a time, each inside the previous.
        var current = try openDirectory([], create: false, for: path)
        for (i, part) in parts.enumerated() {
            if mkdirat(current, part, 0o755) != 0 && errno != EEXIST {
                close(current)
                throw fail(path, "mkdir \(parts[0...i].joined(separator: "/")): \(errnoName(errno))")
            }
            let next = pf_open_in_root(rootfd, parts[0...i].joined(separator: "/"), O_RDONLY | O_DIRECTORY, 0, 0)
            close(current)
            guard next >= 0 else { throw fail(path, "parent directory \(parts[0...i].joined(separator: "/")): \(errnoName(errno))") }
            current = next
        }
        return current
    }

    /// `.wh.NAME` and `.wh..wh..opq`.
    mutating func whiteout(name: String, parent: [String], path: String) throws {
        forgetCachedParent()
        let parentPath = parent.joined(separator: "/")
        if name == ".wh..wh..opq" {
            // Hide the lower content of `parent`; the directory itself must not be a symlink.
            let fd: Int32
            if parent.isEmpty {
                fd = dup(rootfd)
            } else {
                fd = pf_open_in_root(rootfd, parentPath, O_RDONLY | O_DIRECTORY, 0, 1)
            }
            if fd < 0 {
                if errno == ENOENT { return }
                throw fail(path, "opaque whiteout on \(parentPath), which is not a directory (\(errnoName(errno)))")
            }
            defer { close(fd) }
            for child in try listDirectory(fd, path: path) {
                let childPath = parent.isEmpty ? child : parentPath + "/" + child
                if !created.contains(childPath) { try removeTree(fd, child, path: childPath) }
            }
            return
        }
        let target = String(name.dropFirst(4))
        guard !target.isEmpty, target != ".", target != "..", !target.hasPrefix(".wh.") else {
            throw fail(path, "invalid whiteout")
        }
        let targetPath = parent.isEmpty ? target : parentPath + "/" + target
        if created.contains(targetPath) { return }  // whiteouts apply to lower layers only
        let fd: Int32
        do {
            fd = try openDirectory(parent, create: false, for: path)
        } catch let error as PropellerError where error.message.hasSuffix("ENOENT") {
            return
        }
        defer { close(fd) }
        try removeTree(fd, target, path: targetPath)
    }

    /// Directory mtimes, last, deepest first.
    mutating func finish() throws {
        forgetCachedParent()
        for (path, time) in directoryTimes.reversed() {
            let fd = pf_open_in_root(rootfd, path, O_RDONLY | O_DIRECTORY, 0, 1)
            guard fd >= 0 else { continue }  // removed by a later whiteout in this layer
            var times = [time, time]
            _ = futimens(fd, &times)
            close(fd)
        }
    }
}

// File type bits of st_mode and tar headers (Glibc's macros are ambiguous to Swift).
let fileTypeMask: mode_t = 0o170000
let regularFile: mode_t = 0o100000
let directoryType: mode_t = 0o040000
let symlinkType: mode_t = 0o120000

extension la_int64_t {
    /// A uid/gid from a tar header; out-of-range values become nobody (65534).
    var asID: UInt32 { self >= 0 && self <= 0xffff_fffe ? UInt32(self) : 65534 }
}
