#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage
import CFileSystem

/// Where an execution finds its message and leaves its results, inside the container.
enum ExecutionFiles {
    static let directory = "propeller"
    static let message = "message"
    static let results = "results"
    static let state = "state.json"
    /// The largest message handed over in `MSG` too (an environment string must stay well
    /// under the kernel's 128 KiB per string).
    static let messageInEnvironment = 32 << 10
    static let stateLimit = 1 << 20

    /// Writes the files into the run's writable root: the message read-only, the results file
    /// empty and writable by any user, the state when the actor has one.
    ///
    /// `root` holds what the image shipped when a run copies the rootfs (no overlayfs), so a
    /// `/propeller` symlink there is the image's: the directory is resolved inside `root`
    /// (openat2 RESOLVE_IN_ROOT), as the container itself would see it, and each file is
    /// created with O_EXCL|O_NOFOLLOW. An image's `/propeller -> /etc/cron.d` once made the
    /// proplet write these files into the host's /etc/cron.d as root.
    static func write(into root: String, message: Data, state: String?) throws {
        let dir = try openDirectory(in: root, create: true)
        defer { close(dir) }
        try create(dir, Self.message, in: root, bytes: message, mode: 0o444)
        try create(dir, results, in: root, bytes: Data(), mode: 0o666)
        if let state { try create(dir, Self.state, in: root, bytes: Data(state.utf8), mode: 0o666) }
    }

    /// `/propeller` resolved inside `root`, made when missing and `create` is set.
    private static func openDirectory(in root: String, create: Bool) throws -> Int32 {
        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw PropellerError(.systemCall, "open run root \(root): \(errnoName(errno))") }
        defer { close(rootFD) }
        var fd = pf_open_in_root(rootFD, directory, O_RDONLY | O_DIRECTORY, 0, 0)
        if fd < 0 && errno == ENOENT && create {
            // A missing name, or a dangling symlink, which mkdirat refuses (EEXIST) rather than follow.
            guard mkdirat(rootFD, directory, 0o755) == 0 else {
                let err = errno
                var target = [CChar](repeating: 0, count: 4096)
                let n = readlinkat(rootFD, directory, &target, target.count - 1)
                if err == EEXIST && n > 0 {
                    throw PropellerError(.invalidArgument, "the image's /\(directory) is a symlink to \(String(decoding: target.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)), which the image does not have: /\(directory) is where an execution's message and results go")
                }
                throw PropellerError(.systemCall, "create /\(directory) in \(root): \(errnoName(err))")
            }
            fd = pf_open_in_root(rootFD, directory, O_RDONLY | O_DIRECTORY, 0, 0)
        }
        if fd < 0 && errno == ENOTDIR {
            throw PropellerError(.invalidArgument, "the image's /\(directory) is not a directory: /\(directory) is where an execution's message and results go")
        }
        guard fd >= 0 else { throw PropellerError(.systemCall, "open /\(directory) in \(root): \(errnoName(errno))") }
        return fd
    }

    private static func create(_ dir: Int32, _ name: String, in root: String, bytes: Data, mode: mode_t) throws {
        let path = root + "/" + directory + "/" + name
        let fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw PropellerError(.systemCall, "create \(path): \(errnoName(errno))") }
        defer { close(fd) }
        // The umask must not take the write bit the container's user needs.
        fchmod(fd, mode)
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress.map { $0 + done }, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw PropellerError(.systemCall, "write \(path): \(errnoName(errno))") }
                done += n
            }
        }
    }

    /// Reads up to `limit` bytes of a file the container may have tampered with: the directory
    /// is resolved inside `root` and the file opened without following a symlink, and must be a
    /// regular file, so a container cannot make the proplet read a host file. Returns the bytes and
    /// whether there were more.
    static func read(_ name: String, in root: String, limit: Int) -> (Data, truncated: Bool)? {
        guard let dirFD = try? openDirectory(in: root, create: false) else { return nil }
        defer { close(dirFD) }
        let fd = openat(dirFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = min(Int(st.st_size), limit) + 1
        var out = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress.map { $0 + got }, size - got) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        return (Data(out.prefix(min(got, limit))), got > limit)
    }
}
