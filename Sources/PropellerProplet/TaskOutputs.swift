#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage
import PropellerRuntime

/// Tasks' `--output` directories, kept on the proplet after they end: `<data>/outputs/TASK/ATTEMPT`,
/// owned by the task's user while it runs, measured when it ends (dropped when over the
/// limit), answered file by file to the manager, and removed after their time to live.
struct TaskOutputs: Sendable {
    let root: String
    let limitBytes: UInt64
    let ttl: Duration
    /// Bytes per answer: one MQTT message each.
    static let chunkBytes = 256 << 10

    /// The attempt's empty directory (the task's earlier attempts' are removed: only the
    /// last is kept).
    func prepare(task: String, attempt: Int, owner: ResolvedUser) throws -> String {
        guard Topics.isValidComponent(task) else { throw PropellerError(.invalidArgument, "task id \(task)") }
        let taskDir = root + "/" + task
        for dir in [root, taskDir] where mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "make \(dir): \(errnoName(errno))")
        }
        for old in (try? FileManager.default.contentsOfDirectory(atPath: taskDir)) ?? [] where old != String(attempt) {
            try? FileManager.default.removeItem(atPath: taskDir + "/" + old)
        }
        let dir = taskDir + "/\(attempt)"
        try? FileManager.default.removeItem(atPath: dir)
        guard mkdir(dir, 0o755) == 0, chown(dir, owner.uid, owner.gid) == 0 else {
            throw PropellerError(.systemCall, "make the output directory \(dir): \(errnoName(errno))")
        }
        return dir
    }

    /// What `directory` holds now; over the limit, it is removed.
    func seal(_ directory: String) -> OutputSummary {
        let files = list(directory)
        let bytes = files.reduce(UInt64(0)) { $0 + $1.sizeBytes }
        guard bytes <= limitBytes else {
            try? FileManager.default.removeItem(atPath: directory)
            return OutputSummary(files: files.count, bytes: bytes, kept: false,
                                 reason: "\(ByteSize(bytes: bytes)) is over this proplet's --output-limit of \(ByteSize(bytes: limitBytes))")
        }
        return OutputSummary(files: files.count, bytes: bytes, kept: true)
    }

    /// The regular files below `directory`, symlinks not followed.
    func list(_ directory: String) -> [OutputFile] {
        var files: [OutputFile] = []
        let walker = FileManager.default.enumerator(atPath: directory)
        while let relative = walker?.nextObject() as? String {
            var st = stat()
            guard lstat(directory + "/" + relative, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            files.append(OutputFile(path: relative, sizeBytes: UInt64(st.st_size)))
        }
        return files.sorted { $0.path < $1.path }
    }

    /// Answers `request` through `send`: the listing, or the file in order, or an error.
    func answer(_ request: OutputRequest, propletID: String, send: (OutputReply) -> Void) {
        func fail(_ why: String) { send(OutputReply(requestId: request.requestId, propletId: propletID, error: why)) }
        let directory = root + "/" + request.taskId + "/\(request.attempt)"
        var st = stat()
        guard Topics.isValidComponent(request.taskId), lstat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            return fail("task \(request.taskId)'s outputs are no longer on proplet \(propletID) (kept for \(DurationParsing.format(ttl)))")
        }
        guard let path = request.path else {
            return send(OutputReply(requestId: request.requestId, propletId: propletID, listing: list(directory)))
        }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { return fail("open \(directory): \(errnoName(errno))") }
        defer { close(dirfd) }
        // Resolved as if the directory were the root: the task's symlinks cannot leave it.
        let fd = ConfinedOpen.open(path, below: dirfd, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { return fail("no file \(path) in task \(request.taskId)'s outputs (\(errnoName(errno)))") }
        defer { close(fd) }
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return fail("\(path) in task \(request.taskId)'s outputs is not a file") }
        var buffer = [UInt8](repeating: 0, count: Self.chunkBytes)
        var index = 0
        var left = Int(st.st_size)  // what it held when asked: a file still growing is cut there
        repeat {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, max(left, 0))) }
            guard n >= 0 else { return fail("read \(path): \(errnoName(errno))") }
            left -= n
            send(OutputReply(requestId: request.requestId, propletId: propletID, index: index, last: n == 0 || left <= 0,
                             data: Data(buffer[0..<n])))
            index += 1
            if n == 0 { break }
        } while left > 0
    }

    /// Removes the outputs of tasks that ended more than the time to live ago.
    func removeExpired() {
        let cutoff = Date().addingTimeInterval(-Double(ttl.components.seconds))
        for task in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let path = root + "/" + task
            let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date()
            if modified < cutoff { try? FileManager.default.removeItem(atPath: path) }
        }
    }
}
