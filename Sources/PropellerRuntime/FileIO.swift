#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore

/// Small, errno-preserving file helpers for /proc, /sys and cgroupfs, where Foundation's file
/// APIs either hide the errno or read in ways pseudo-files do not like.
enum FileIO {
    static func errnoName(_ err: Int32) -> String {
        if let name = pl_errno_name(err) { return String(cString: name) }
        return "errno \(err)"
    }

    static func systemError(_ stage: String, _ path: String, _ err: Int32 = errno) -> PropellerError {
        let code: PropellerError.Code = err == ENOENT ? .notFound : (err == EACCES || err == EPERM ? .permissionDenied : .systemCall)
        return PropellerError(code, "\(stage) \(path): \(errnoName(err))")
    }

    static func readString(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("open", path) }
        defer { close(fd) }
        return try readAll(fd: fd, path: path)
    }

    static func readAll(fd: Int32, path: String) throws -> String {
        var result = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw systemError("read", path)
            }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// Writes `value` to an existing file (no O_CREAT: cgroupfs files exist or the controller is missing).
    static func writeExisting(_ path: String, _ value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("open", path) }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw systemError("write \"\(value)\" to", path) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}


/// Pipes for a container's stdio.
public enum StdioPipe {
    /// A pipe whose ends close on exec (the container gets only what its stdio names).
    public static func make() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard pl_pipe_cloexec(&fds) == 0 else { throw FileIO.systemError("create a pipe", "") }
        return (fds[0], fds[1])
    }
}

/// Opening files below a directory that others may have filled (a task's outputs).
public enum ConfinedOpen {
    /// Opens `path` relative to the directory `directory` as if it were `/`: `..` and symlinks,
    /// absolute ones included, cannot leave it, and magic links (`/proc/self/fd/…`) are refused.
    /// A descriptor, or -1 with errno set.
    public static func open(_ path: String, below directory: Int32, flags: Int32) -> Int32 {
        pl_open_in_root(directory, path, flags)
    }
}
