#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerImage
import PropellerRuntime

/// Fetches a task's artifacts (``ArtifactSpec``) before it starts: each into a directory of
/// the run's own, checked against its digest when one is given, an archive unpacked with the
/// same safety as an image layer; mounted into the task like a volume (after `pivot_root`,
/// its target resolved inside the container) and removed with the run, or, when its
/// destination is inside a writable volume of the task, put into that volume.
struct ArtifactFetcher: Sendable {
    /// The most bytes one artifact may have, downloaded and unpacked each.
    var maxBytes: UInt64 = 1 << 30
    /// A download that moves no byte for this long fails.
    var stallSeconds = 30

    private func failure(_ artifact: ArtifactSpec, _ why: String) -> PropellerError {
        PropellerError(.invalidArgument, "artifact \(HTTPTransport.redacted(artifact.url)): \(why)")
    }

    /// Fetches `artifact` into `directory` (made here); the mount that puts it in the task.
    func fetch(_ artifact: ArtifactSpec, into directory: String) throws -> ContainerSpec.Mount {
        let download = try self.download(artifact, into: directory)
        guard artifact.isArchive else { return ContainerSpec.Mount(.bind(download), at: artifact.destination) }
        let tree = directory + "/tree"
        guard mkdir(tree, 0o755) == 0 else { throw failure(artifact, "make \(tree): \(errnoName(errno))") }
        try unpack(download, into: tree, artifact: artifact)
        unlink(download)
        return ContainerSpec.Mount(.bind(tree), at: artifact.destination)
    }

    /// Fetches `artifact` into `directory`, then puts it into a volume instead of mounting it:
    /// at `relative` below the volume's host directory `volume`, each directory on the way
    /// opened without following symlinks (a task that used the volume before may have left
    /// one), an archive unpacked there with a layer's safety (every path resolved inside), a
    /// file copied.
    func fetch(_ artifact: ArtifactSpec, into directory: String, volume: String, relative: String) throws {
        let download = try self.download(artifact, into: directory)
        var parts = relative.split(separator: "/").map(String.init)
        let file = artifact.isArchive ? nil : parts.popLast()
        var fd = open(volume, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw failure(artifact, "open the volume at \(volume): \(errnoName(errno))") }
        defer { close(fd) }
        for part in parts {
            if mkdirat(fd, part, 0o755) != 0 && errno != EEXIST { throw failure(artifact, "make \(part) in the volume: \(errnoName(errno))") }
            let next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else { throw failure(artifact, "\(part) in the volume is not a directory (a symlink?): \(errnoName(errno))") }
            close(fd)
            fd = next
        }
        guard let file else {
            // Through the descriptor: the directory opened above, whatever links say now.
            return try unpack(download, into: "/proc/self/fd/\(fd)", artifact: artifact)
        }
        let source = open(download, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw failure(artifact, "open \(download): \(errnoName(errno))") }
        defer { close(source) }
        unlinkat(fd, file, 0)
        let target = openat(fd, file, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard target >= 0 else { throw failure(artifact, "create \(file) in the volume: \(errnoName(errno))") }
        defer { close(target) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            guard n >= 0 else { throw failure(artifact, "read \(download): \(errnoName(errno))") }
            if n == 0 { break }
            guard buffer.withUnsafeBytes({ write(target, $0.baseAddress, n) }) == n else {
                throw failure(artifact, "write \(file) in the volume: \(errnoName(errno))")
            }
        }
    }

    /// Downloads `artifact` to `directory/download` (the directory made here), checked against
    /// its digest.
    private func download(_ artifact: ArtifactSpec, into directory: String) throws -> String {
        guard mkdir(directory, 0o755) == 0 else { throw failure(artifact, "make \(directory): \(errnoName(errno))") }
        let download = directory + "/download"
        let fd = open(download, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(artifact, "create \(download): \(errnoName(errno))") }
        defer { close(fd) }
        var transport = HTTPTransport()
        transport.stallTimeoutSeconds = stallSeconds
        transport.connectTimeoutSeconds = stallSeconds
        let hasher = BlobHasher()
        var size: UInt64 = 0
        let limit = maxBytes
        let response = try transport.send("GET", artifact.url, headers: []) { status, bytes in
            guard status == 200 else { return }
            size += UInt64(bytes.count)
            guard size <= limit else { throw failure(artifact, "larger than \(ByteSize(bytes: limit))") }
            hasher.update(ArraySlice(bytes.bindMemory(to: UInt8.self)))
            var at = 0
            while at < bytes.count {
                let n = write(fd, bytes.baseAddress.map { $0 + at }, bytes.count - at)
                guard n > 0 else { throw failure(artifact, "write \(download): \(errnoName(errno))") }
                at += n
            }
        }
        guard response.status == 200 else { throw failure(artifact, "HTTP \(response.status)") }
        let digest = hasher.finalize()
        if let expected = artifact.sha256, digest.hex != expected {
            throw failure(artifact, "its sha256 is \(digest.hex), not the \(expected) asked for")
        }
        return download
    }

    private func unpack(_ archive: String, into root: String, artifact: ArtifactSpec) throws {
        var options = LayerUnpacker.Options()
        options.maxUnpackedBytes = maxBytes
        do {
            _ = try LayerUnpacker(options: options).unpack(layerAt: archive, into: root, layerName: "artifact")
        } catch {
            throw failure(artifact, "cannot unpack: \(error)")
        }
    }
}
