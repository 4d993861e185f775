#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage

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
    static func write(into root: String, message: Data, state: String?) throws {
        let dir = root + "/" + directory
        guard mkdir(dir, 0o755) == 0 || errno == EEXIST else { throw PropellerError(.systemCall, "create \(dir): \(errnoName(errno))") }
        try create(dir + "/" + Self.message, bytes: message, mode: 0o444)
        try create(dir + "/" + results, bytes: Data(), mode: 0o666)
        if let state { try create(dir + "/" + Self.state, bytes: Data(state.utf8), mode: 0o666) }
    }

    private static func create(_ path: String, bytes: Data, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
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
    /// and the file are opened without following symlinks and must be a directory and a regular
    /// file, so a container cannot make the proplet read a host file. Returns the bytes and
    /// whether there were more.
    static func read(_ name: String, in root: String, limit: Int) -> (Data, truncated: Bool)? {
        let dirFD = open(root + "/" + directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dirFD >= 0 else { return nil }
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
