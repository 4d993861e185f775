#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerImage
import PropellerRuntime

/// Fetches a task's artifacts (``ArtifactSpec``) before it starts: each into a directory of
/// the run's own, checked against its digest when one is given, an archive unpacked with the
/// same safety as an image layer; mounted into the task like a volume (after `pivot_root`,
/// its target resolved inside the container), and removed with the run.
struct ArtifactFetcher: Sendable {
    /// The most bytes one artifact may have, downloaded and unpacked each.
    var maxBytes: UInt64 = 1 << 30
    /// A download that moves no byte for this long fails.
    var stallSeconds = 30

    /// Fetches `artifact` into `directory` (made here); the mount that puts it in the task.
    func fetch(_ artifact: ArtifactSpec, into directory: String) throws -> ContainerSpec.Mount {
        func fail(_ why: String) -> PropellerError { PropellerError(.invalidArgument, "artifact \(HTTPTransport.redacted(artifact.url)): \(why)") }
        guard mkdir(directory, 0o755) == 0 else { throw fail("make \(directory): \(errnoName(errno))") }
        let download = directory + "/download"
        let fd = open(download, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("create \(download): \(errnoName(errno))") }
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
            guard size <= limit else { throw fail("larger than \(ByteSize(bytes: limit))") }
            hasher.update(ArraySlice(bytes.bindMemory(to: UInt8.self)))
            var at = 0
            while at < bytes.count {
                let n = write(fd, bytes.baseAddress.map { $0 + at }, bytes.count - at)
                guard n > 0 else { throw fail("write \(download): \(errnoName(errno))") }
                at += n
            }
        }
        guard response.status == 200 else { throw fail("HTTP \(response.status)") }
        let digest = hasher.finalize()
        if let expected = artifact.sha256, digest.hex != expected {
            throw fail("its sha256 is \(digest.hex), not the \(expected) asked for")
        }
        guard artifact.isArchive else { return ContainerSpec.Mount(.bind(download), at: artifact.destination) }
        let tree = directory + "/tree"
        guard mkdir(tree, 0o755) == 0 else { throw fail("make \(tree): \(errnoName(errno))") }
        var options = LayerUnpacker.Options()
        options.maxUnpackedBytes = maxBytes
        do {
            _ = try LayerUnpacker(options: options).unpack(layerAt: download, into: tree, layerName: "artifact")
        } catch {
            throw fail("cannot unpack: \(error)")
        }
        unlink(download)
        return ContainerSpec.Mount(.bind(tree), at: artifact.destination)
    }
}
