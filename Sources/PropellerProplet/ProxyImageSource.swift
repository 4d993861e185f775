#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PropellerCore
import PropellerImage
import PropellerMQTT

/// Images through `propeller proxy` (ARCHITECTURE.md, "Images"): resolve the reference, then receive only the
/// blobs this proplet lacks as checksummed chunks on their own topics, ask again for what went
/// missing, and store a blob only once its digest matches. Blocking: called from a task's thread.
final class ProxyImageSource: @unchecked Sendable {
    let client: MQTTClient
    let topics: Topics
    let propletID: String
    let images: ImageStore
    let logger: Logger
    /// Without progress for this long, ask for what is missing.
    var stallTimeout: Duration = .seconds(2)
    /// Requests for missing pieces before giving up.
    var maxRounds = 8
    var responseTimeout: Duration = .seconds(10)

    private let condition = NSCondition()
    private var responses: [String: RegistryResponse] = [:]
    private var blobErrors: [String: String] = [:]
    private var assemblies: [String: Assembly] = [:]
    /// One image fetch at a time on this proplet: two tasks of the same image share its blobs.
    private let fetchLock = NSLock()

    final class Assembly {
        let digest: Digest
        let path: String
        let fd: Int32
        var total: UInt32?
        var size: UInt64 = 0
        var received = Set<UInt32>()
        /// Bytes of the chunks received (for progress).
        var bytesReceived: UInt64 = 0
        /// Each received chunk's checksum from its header: chunks that arrive in order are not
        /// hashed one by one (the blob's running hash covers them); if the blob then fails its
        /// digest, these find the bad chunks to ask for again.
        var expected: [UInt32: [UInt8]] = [:]
        var chunkSize: UInt64 = 0
        var corrupted = 0
        /// Hashes chunks while they arrive in order; dropped (the file is hashed at the end)
        /// once one arrives out of order.
        var hasher: BlobHasher? = BlobHasher()
        var nextInOrder: UInt32 = 0
        var lastProgress = ContinuousClock.now
        /// When the first and the last chunk arrived (for the debug log).
        var firstChunk: ContinuousClock.Instant?
        var lastChunk: ContinuousClock.Instant?

        init(digest: Digest, path: String) throws {
            self.digest = digest
            self.path = path
            fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw PropellerError(.systemCall, "proxy pull: create \(path): errno \(errno)") }
        }

        var complete: Bool { total.map { received.count == Int($0) } ?? false }
        var missing: [UInt32] { total.map { t in (0..<t).filter { !received.contains($0) } } ?? [] }

        func reset() {
            received.removeAll()
            bytesReceived = 0
            expected.removeAll()
            hasher = BlobHasher()
            nextInOrder = 0
            total = nil
            _ = ftruncate(fd, 0)
        }

        func close() { _ = Glibc.close(fd) }
    }

    init(client: MQTTClient, topics: Topics, propletID: String, images: ImageStore, logger: Logger) {
        self.client = client
        self.topics = topics
        self.propletID = propletID
        self.images = images
        self.logger = logger
    }

    // MARK: Messages (from the agent's message loop)

    func handleResponse(_ payload: [UInt8]) {
        guard let r = try? WireCoding.decode(RegistryResponse.self, from: payload) else { return }
        condition.lock()
        responses[r.requestId] = r
        if let error = r.error, let digest = r.digest { blobErrors[digest] = error }
        condition.broadcast()
        condition.unlock()
    }

    func handleChunk(_ payload: [UInt8]) {
        guard let chunk = BlobChunk(parsing: payload) else { return }
        condition.lock()
        defer { condition.unlock() }
        guard let a = assemblies[chunk.digestHex], !a.received.contains(chunk.index) else { return }
        // In order, the blob's running hash checks the chunk (once, not twice: this runs on the
        // MQTT network thread, and every millisecond here is one the socket is not read).
        let inOrder = chunk.index == a.nextInOrder && a.hasher != nil
        if !inOrder && Checksum.sha256(chunk.payload) != chunk.sha256 {
            a.corrupted += 1
            logger.notice("corrupted chunk dropped", metadata: ["digest": "\(a.digest)", "index": "\(chunk.index)"])
            return
        }
        if let total = a.total, total != chunk.total { return }
        let written = chunk.payload.withUnsafeBytes { pwrite(a.fd, $0.baseAddress, $0.count, off_t(chunk.offset)) }
        guard written == chunk.payload.count else { return }
        ContentStore.startWriteback(fd: a.fd, offset: chunk.offset, length: chunk.payload.count)
        a.total = chunk.total
        a.size = chunk.blobSize
        a.received.insert(chunk.index)
        a.bytesReceived += UInt64(chunk.payload.count)
        a.expected[chunk.index] = chunk.sha256
        if chunk.index == 0 || a.chunkSize == 0 { a.chunkSize = UInt64(chunk.payload.count) }
        if chunk.index == a.nextInOrder {
            a.hasher?.update(chunk.payload)
            a.nextInOrder += 1
        } else {
            a.hasher = nil
        }
        a.lastProgress = .now
        if a.firstChunk == nil { a.firstChunk = a.lastProgress }
        if a.complete { a.lastChunk = a.lastProgress }
        condition.broadcast()
    }

    /// Received chunks whose bytes in the assembly file do not match their header's checksum.
    static func corruptedChunks(_ a: Assembly) -> [UInt32] {
        guard a.chunkSize > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: Int(a.chunkSize))
        return a.received.sorted().filter { index in
            let offset = UInt64(index) * a.chunkSize
            let length = Int(min(a.chunkSize, a.size > offset ? a.size - offset : 0))
            let n = buffer.withUnsafeMutableBytes { pread(a.fd, $0.baseAddress, length, off_t(offset)) }
            guard n == length else { return true }
            return Checksum.sha256(buffer[0..<length]) != a.expected[index]
        }
    }

    // MARK: Pull

    /// The image for `reference`, with every blob this proplet lacked received and verified.
    /// `progress` hears the bytes received of those the proplet lacked, about five times a second.
    func obtain(_ reference: String, progress: ((_ received: UInt64, _ total: UInt64) -> Void)? = nil) throws -> Image {
        fetchLock.lock()
        defer { fetchLock.unlock() }
        let ref = try ImageReference(parsing: reference)
        let response = try request(RegistryRequest(kind: .resolve, requestId: UUID().uuidString, propletId: propletID, image: reference))
        if let error = response.error { throw PropellerError(.notFound, "proxy: \(error)") }
        guard let text = response.manifest, let digestText = response.manifestDigest, let blobs = response.blobs else {
            throw PropellerError(.internalError, "proxy: incomplete answer for \(reference)")
        }
        let manifestDigest = try Digest(validating: digestText)
        let data = Data(text.utf8)
        guard Digest(sha256: Checksum.sha256(Array(data)[...])) == manifestDigest else {
            throw PropellerError(.invalidArgument, "proxy: the manifest of \(reference) does not match its digest \(manifestDigest)")
        }
        if let pinned = ref.digest, pinned != manifestDigest {
            throw PropellerError(.invalidArgument, "proxy: \(reference) resolved to \(manifestDigest)")
        }
        try images.store(data, as: manifestDigest)
        let missing = try blobs.map { try Digest(validating: $0.digest) }.filter { !images.content.contains($0) }
        if !missing.isEmpty {
            let started = ContinuousClock.now
            let sizes = Dictionary(blobs.map { ($0.digest, UInt64(max(0, $0.size))) }, uniquingKeysWith: { a, _ in a })
            try receive(missing, image: reference, totalBytes: missing.map { sizes[$0.description] ?? 0 }.reduce(0, +), progress: progress)
            let elapsed = ContinuousClock.now - started
            let bytes = missing.compactMap { images.content.size(of: $0) }.reduce(0, +)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            logger.info("image received through the proxy", metadata: [
                "image": "\(reference)", "blobs": "\(missing.count)", "bytes": "\(bytes)",
                "ms": "\(Int(seconds * 1000))", "mib_per_s": "\(String(format: "%.1f", Double(bytes) / 1048576 / max(seconds, 1e-9)))",
            ])
        }
        let image = try images.image(manifest: manifestDigest)
        try images.tag(image, as: ref.description)
        return image
    }

    /// Publishes `request` and waits for its answer, asking again twice.
    private func request(_ request: RegistryRequest) throws -> RegistryResponse {
        for attempt in 1...3 {
            try? client.publish(topics.registryRequests(from: propletID), try WireCoding.encode(request))
            let deadline = Date().addingTimeInterval(Double(responseTimeout.components.seconds))
            condition.lock()
            while responses[request.requestId] == nil && condition.wait(until: deadline) {}
            let answer = responses.removeValue(forKey: request.requestId)
            condition.unlock()
            if let answer { return answer }
            logger.notice("no answer from the proxy yet", metadata: ["image": "\(request.image ?? "")", "attempt": "\(attempt)"])
        }
        throw PropellerError(.resourceExhausted, "no answer from the image proxy for \(request.image ?? "") (is `propeller proxy` running on this broker?)")
    }

    private func receive(_ digests: [Digest], image: String, totalBytes: UInt64, progress: ((UInt64, UInt64) -> Void)?) throws {
        let ingest = images.content.root + "/ingest"
        var pending: [String: Assembly] = [:]
        condition.lock()
        for d in digests {
            let a = try Assembly(digest: d, path: "\(ingest)/proxy-\(d.hex).\(getpid()).\(UInt32.random(in: 0...UInt32.max))")
            assemblies[d.hex] = a
            pending[d.hex] = a
        }
        condition.unlock()
        defer {
            condition.lock()
            for (hex, a) in pending where assemblies[hex] === a { assemblies[hex] = nil }
            condition.unlock()
            for a in pending.values {
                a.close()
                unlink(a.path)
                client.unsubscribe(topics.blob(a.digest.description))
            }
        }
        for d in digests { try client.subscribe(topics.blob(d.description)) }
        let fetch = RegistryRequest(kind: .fetch, requestId: UUID().uuidString, propletId: propletID, image: image, digests: digests.map(\.description))
        let requested = ContinuousClock.now
        try client.publish(topics.registryRequests(from: propletID), try WireCoding.encode(fetch))

        var rounds = 0
        var waiting = Set(pending.keys)
        while !waiting.isEmpty {
            condition.lock()
            // Sleep only when nothing is ready: a blob that completed while the previous one was
            // being stored has already been signalled (waiting here cost 200 ms per such blob).
            let ready = waiting.contains { pending[$0]?.complete == true || blobErrors["sha256:" + $0] != nil }
            if !ready { _ = condition.wait(until: Date().addingTimeInterval(0.2)) }
            let receivedBytes = pending.values.reduce(UInt64(0)) { $0 + $1.bytesReceived }
            let done = waiting.filter { pending[$0]?.complete == true }
            let failed = waiting.compactMap { hex in blobErrors.removeValue(forKey: "sha256:" + hex).map { (hex, $0) } }.first
            let stalled = waiting.filter { hex in
                guard let a = pending[hex], !a.complete else { return false }
                return ContinuousClock.now - a.lastProgress > stallTimeout
            }
            condition.unlock()
            progress?(min(receivedBytes, totalBytes), totalBytes)
            if let (hex, error) = failed {
                throw PropellerError(.notFound, "proxy: blob sha256:\(hex.prefix(12)) of \(image): \(error)")
            }
            for hex in done {
                guard let a = pending[hex] else { continue }
                do {
                    condition.lock()
                    let hashed = a.hasher?.finalize()
                    let (first, last) = (a.firstChunk, a.lastChunk)
                    condition.unlock()
                    let adopting = ContinuousClock.now
                    try images.content.adopt(file: a.path, as: a.digest, hashed: hashed)
                    waiting.remove(hex)
                    func ms(_ d: Duration) -> String { String(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000) }
                    logger.debug("blob received", metadata: [
                        "digest": "\(a.digest)", "bytes": "\(a.size)", "first_chunk_ms": "\(first.map { ms($0 - requested) } ?? "-")",
                        "last_chunk_ms": "\(last.map { ms($0 - requested) } ?? "-")", "stored_ms": "\(ms(ContinuousClock.now - requested))",
                        "adopt_ms": "\(ms(ContinuousClock.now - adopting))", "in_order": "\(hashed != nil)",
                    ])
                } catch {
                    rounds += 1
                    condition.lock()
                    let bad = Self.corruptedChunks(a)
                    if !bad.isEmpty && bad.count < a.received.count {
                        // Chunks that arrived in order were checked only by the blob's hash: find
                        // the ones that do not match their checksum and ask for those again.
                        for index in bad {
                            a.received.remove(index)
                            a.corrupted += 1
                            logger.notice("corrupted chunk dropped", metadata: ["digest": "\(a.digest)", "index": "\(index)"])
                        }
                        a.hasher = nil
                        a.lastProgress = .now
                        condition.unlock()
                        try client.publish(topics.registryRequests(from: propletID), try WireCoding.encode(
                            RegistryRequest(kind: .resend, requestId: UUID().uuidString, propletId: propletID, image: image, digest: a.digest.description, missing: bad)))
                    } else {
                        // Every chunk matched its checksum but the blob does not: start it over.
                        logger.warning("assembled blob failed verification; asking again", metadata: ["digest": "\(a.digest)", "error": "\(error)"])
                        a.reset()
                        condition.unlock()
                        try client.publish(topics.registryRequests(from: propletID), try WireCoding.encode(
                            RegistryRequest(kind: .fetch, requestId: UUID().uuidString, propletId: propletID, image: image, digests: [a.digest.description])))
                    }
                }
            }
            if !stalled.isEmpty {
                rounds += 1
                if rounds > maxRounds {
                    let report = stalled.compactMap { pending[$0] }.map { "sha256:\($0.digest.hex.prefix(12)) \($0.received.count)/\($0.total.map(String.init) ?? "?") chunks" }
                    throw PropellerError(.resourceExhausted, "proxy: gave up on \(image) after \(maxRounds) requests for missing chunks (\(report.joined(separator: ", ")))")
                }
                for hex in stalled {
                    guard let a = pending[hex] else { continue }
                    condition.lock()
                    let missing = a.missing
                    a.lastProgress = .now
                    condition.unlock()
                    let request = missing.isEmpty
                        ? RegistryRequest(kind: .fetch, requestId: UUID().uuidString, propletId: propletID, image: image, digests: [a.digest.description])
                        : RegistryRequest(kind: .resend, requestId: UUID().uuidString, propletId: propletID, image: image, digest: a.digest.description, missing: missing)
                    logger.notice("asking the proxy again", metadata: ["digest": "\(a.digest)", "missing": "\(missing.isEmpty ? "all" : String(missing.count))"])
                    try? client.publish(topics.registryRequests(from: propletID), try WireCoding.encode(request))
                }
            }
        }
    }
}
