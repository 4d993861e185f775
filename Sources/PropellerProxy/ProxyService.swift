#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Logging
import PropellerCore
import PropellerImage
import PropellerMQTT

/// Test-only faults, off unless `PROPELLER_PROXY_FAULTS` names them (e.g. `drop=2,corrupt=4`):
/// the first time chunk N of any blob is published it is dropped, or sent with one byte flipped.
struct FaultPlan: Sendable {
    var dropIndex: UInt32?
    var corruptIndex: UInt32?

    init(_ text: String?) {
        for part in (text ?? "").split(separator: ",") {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let n = UInt32(kv[1]) else { continue }
            if kv[0] == "drop" { dropIndex = n }
            if kv[0] == "corrupt" { corruptIndex = n }
        }
    }
}

/// Answers proplets' registry requests: resolves references with the registry client (every
/// auth flow it has), fetches each blob from the registry once into the cache (concurrent
/// requests share the fetch), and publishes blobs in checksummed chunks, paced by the broker's
/// acknowledgements, resending the chunks a proplet reports missing.
public actor ProxyService {
    /// Chunk checksums of blobs already served, by digest.
    var chunkChecksums: [Digest: [[UInt8]]] = [:]
    public struct Options: Sendable {
        public var chunkSize: Int = 512 << 10
        /// Chunks published and not yet acknowledged by the broker, at most.
        public var window: Int = 32
        public var faults: String?
        public init() {}
    }

    let client: MQTTClient
    let topics: Topics
    let registry: @Sendable () throws -> RegistryClient
    let cache: BlobCache
    let metrics: ProxyMetrics
    let options: Options
    let logger: Logger
    var fetches: [Digest: Task<Void, any Error>] = [:]
    var streams: [Digest: Task<Void, Never>] = [:]
    /// Blob sizes from the manifests this proxy resolved (forgotten past 100,000 entries).
    var knownSizes: [Digest: Int64] = [:] {
        didSet { if knownSizes.count > 100_000 { knownSizes.removeAll() } }
    }
    /// The most chunk indexes one resend may name.
    static let maxResendIndexes = 1 << 20
    /// Resends of one blob are published at most this often (see ``queueResend``).
    static let resendSpacing: Duration = .milliseconds(250)
    struct PendingResend {
        var ref: ImageReference
        /// nil: every chunk.
        var indexes: Set<UInt32>? = []
        /// Whom to tell when the resend fails (one request per proplet).
        var requesters: [RegistryRequest] = []
    }
    var pendingResends: [Digest: PendingResend] = [:]
    var lastResend: [Digest: ContinuousClock.Instant] = [:]
    var faults: FaultPlan

    init(client: MQTTClient, topics: Topics, registry: @escaping @Sendable () throws -> RegistryClient, cache: BlobCache, metrics: ProxyMetrics,
         options: Options, logger: Logger) {
        self.client = client
        self.topics = topics
        self.registry = registry
        self.cache = cache
        self.metrics = metrics
        self.options = options
        self.logger = logger
        faults = FaultPlan(options.faults)
    }

    /// Reads requests until the message stream ends.
    func run() async throws {
        try client.subscribe(topics.allRegistryRequests)
        for await message in client.messages {
            guard let sender = topics.propletID(inRequestTopic: message.topic) else { continue }
            do {
                let request = try WireCoding.decode(RegistryRequest.self, from: message.payload)
                // The broker's ACL lets a proplet write only its own request topic; answers go to
                // the topic's proplet, so one proplet cannot send work to another's inbox.
                guard request.propletId == sender else {
                    logger.error("rejected a request", metadata: ["sender": "\(sender)", "claimed": "\(request.propletId)"])
                    continue
                }
                handle(request)
            } catch {
                logger.warning("dropped a malformed request", metadata: ["error": "\(error)"])
            }
        }
    }

    func handle(_ r: RegistryRequest) {
        switch r.kind {
        case .resolve:
            Task { await resolve(r) }
        case .fetch:
            guard let image = r.image, let ref = try? ImageReference(parsing: image) else {
                return respond(r, RegistryResponse(requestId: r.requestId, error: "fetch without a valid image reference"))
            }
            var digests: [Digest] = []
            for text in r.digests ?? [] {
                guard let digest = try? Digest(validating: text) else {
                    respond(r, RegistryResponse(requestId: r.requestId, error: "invalid digest \(text)", digest: text))
                    continue
                }
                digests.append(digest)
            }
            stream(digests, ref: ref, request: r)
        case .resend:
            guard let text = r.digest, let digest = try? Digest(validating: text), let image = r.image, let ref = try? ImageReference(parsing: image) else {
                return respond(r, RegistryResponse(requestId: r.requestId, error: "resend needs a valid digest and image"))
            }
            queueResend(digest, indexes: r.missing ?? [], ref: ref, request: r)
        }
    }

    /// Merges a resend request into the blob's next resend. Every subscriber of the blob's topic
    /// receives what is published, so requests from all proplets are answered together, each
    /// index once, at most every ``resendSpacing`` per blob: a proplet (or a forged request
    /// flood) cannot make the proxy publish the same chunks to every subscriber over and over.
    func queueResend(_ digest: Digest, indexes: [UInt32], ref: ImageReference, request: RegistryRequest) {
        let scheduled = pendingResends[digest] != nil
        var pending = pendingResends[digest] ?? PendingResend(ref: ref)
        if indexes.isEmpty {
            pending.indexes = nil  // everything
        } else if pending.indexes != nil {
            pending.indexes?.formUnion(indexes.prefix(Self.maxResendIndexes))
            if (pending.indexes?.count ?? 0) > Self.maxResendIndexes { pending.indexes = nil }
        }
        if !pending.requesters.contains(where: { $0.propletId == request.propletId }) && pending.requesters.count < 64 {
            pending.requesters.append(request)
        }
        pendingResends[digest] = pending
        metrics.update { $0.resendRequests += 1 }
        guard !scheduled else { return }
        let wait = lastResend[digest].map { Self.resendSpacing - (ContinuousClock.now - $0) } ?? .zero
        Task {
            if wait > .zero { try? await Task.sleep(for: wait) }
            await flushResend(digest)
        }
    }

    func flushResend(_ digest: Digest) async {
        guard let pending = pendingResends.removeValue(forKey: digest) else { return }
        lastResend[digest] = .now
        if lastResend.count > 10_000 { lastResend = lastResend.filter { ContinuousClock.now - $0.value < Self.resendSpacing } }
        do {
            try await ensureCached(digest, ref: pending.ref)
            let published = try await publish(digest, indexes: pending.indexes.map { Array($0).sorted() })
            metrics.update { $0.resends += UInt64(published) }
        } catch {
            for request in pending.requesters {
                respond(request, RegistryResponse(requestId: request.requestId, image: "\(pending.ref)", error: "\(error)", digest: digest.description))
            }
        }
    }

    func respond(_ r: RegistryRequest, _ response: RegistryResponse) {
        do {
            try client.publish(topics.registryResponses(r.propletId), try WireCoding.encode(response))
        } catch {
            logger.warning("cannot answer", metadata: ["proplet": "\(r.propletId)", "error": "\(error)"])
        }
    }

    /// Runs blocking registry I/O off the actor's executor.
    nonisolated func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
            }
        }
    }

    func resolve(_ r: RegistryRequest) async {
        guard let image = r.image else { return respond(r, RegistryResponse(requestId: r.requestId, error: "resolve without an image")) }
        do {
            let ref = try ImageReference(parsing: image)
            let registry = self.registry
            let (data, digest) = try await blocking { () throws -> (Data, Digest) in
                let client = try registry()
                var fetched = try client.manifest(ref)
                if MediaType.indexes.contains(fetched.mediaType) {
                    let index = try JSONDecoder().decode(ImageIndex.self, from: fetched.data)
                    let chosen = try index.manifestForThisPlatform("\(ref)")
                    fetched = try client.manifest(ref, reference: chosen.digest.description)
                    guard fetched.digest == chosen.digest else { throw PropellerError(.invalidArgument, "\(ref): manifest digest mismatch") }
                }
                return (fetched.data, fetched.digest)
            }
            let manifest = try JSONDecoder().decode(ImageManifest.self, from: data)
            try ImageLimits.check(manifest, reference: image, storeDirectory: cache.store.root)
            let blobs = [manifest.config] + manifest.layers
            // A later fetch is bounded by the size the manifest gave (an endless blob stops there).
            for b in blobs { knownSizes[b.digest] = b.size }
            metrics.update { $0.manifestsResolved += 1 }
            respond(r, RegistryResponse(requestId: r.requestId, image: image, manifestDigest: digest.description,
                                        manifest: String(decoding: data, as: UTF8.self),
                                        blobs: blobs.map { RegistryResponse.Blob(digest: $0.digest.description, size: $0.size) }))
            logger.info("resolved", metadata: ["image": "\(image)", "manifest": "\(digest)", "proplet": "\(r.propletId)"])
        } catch {
            metrics.update { $0.registryErrors += 1 }
            logger.warning("resolve failed", metadata: ["image": "\(image)", "error": "\(error)"])
            respond(r, RegistryResponse(requestId: r.requestId, image: image, error: "\(error)"))
        }
    }

    /// The blob in the cache, fetched from the registry by exactly one task per digest.
    func ensureCached(_ digest: Digest, ref: ImageReference) async throws {
        if cache.contains(digest) {
            metrics.update { $0.cacheHits += 1 }
            cache.touch(digest)
            return
        }
        if let running = fetches[digest] { return try await running.value }
        let registry = self.registry
        let cache = self.cache
        let size = knownSizes[digest]
        let task = Task<Void, any Error> {
            try await self.blocking {
                try registry().fetchBlob(ref, digest, size: size, into: cache.store)
            }
        }
        fetches[digest] = task
        defer { fetches[digest] = nil }
        do {
            try await task.value
            metrics.update { $0.registryFetches += 1 }
            let evicted = cache.evict()
            if evicted > 0 { metrics.update { $0.evictions += UInt64(evicted) } }
            logger.info("fetched from the registry", metadata: ["digest": "\(digest)", "image": "\(ref)"])
        } catch {
            metrics.update { $0.registryErrors += 1 }
            throw error
        }
    }

    /// Publishes every chunk of `digests`; a stream already running for one serves this request
    /// too (late subscribers ask for what they missed). The blobs are fetched from the registry
    /// at once but published one after another, so the proplet stores (fsyncs) each blob while
    /// the next one is on the wire instead of all of them at the end.
    func stream(_ digests: [Digest], ref: ImageReference, request: RegistryRequest) {
        let fresh = digests.filter { streams[$0] == nil }
        guard !fresh.isEmpty else { return }
        let fetched = fresh.map { digest in (digest, Task { try await self.ensureCached(digest, ref: ref) }) }
        let task = Task {
            for (digest, fetch) in fetched {
                do {
                    try await fetch.value
                    try await publish(digest, indexes: nil)
                    metrics.update { $0.blobsServed += 1 }
                } catch {
                    logger.warning("blob stream failed", metadata: ["digest": "\(digest)", "error": "\(error)"])
                    respond(request, RegistryResponse(requestId: request.requestId, image: "\(ref)", error: "\(error)", digest: digest.description))
                }
                streams[digest] = nil
            }
        }
        for digest in fresh { streams[digest] = task }
    }

    /// Publishes the chunks of a cached blob (all, or the given indexes), paced by the broker.
    /// Each chunk's checksum is computed once per blob and kept (blobs are immutable), so serving
    /// the next proplet costs no hashing. Returns how many chunks it published.
    @discardableResult
    func publish(_ digest: Digest, indexes: [UInt32]?) async throws -> Int {
        cache.pin(digest)
        defer { cache.unpin(digest) }
        let path = cache.store.path(for: digest)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PropellerError(.notFound, "proxy cache: open \(path): errno \(errno)") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = UInt64(st.st_size)
        let chunk = UInt64(options.chunkSize)
        let total = UInt32(max(1, (size + chunk - 1) / chunk))
        let topic = topics.blob(digest.description)
        let headerSize = BlobChunk.headerSize
        var sums = chunkChecksums[digest] ?? []
        if sums.count != Int(total) { sums = Array(repeating: [], count: Int(total)) }
        defer { rememberChecksums(sums, of: digest) }
        var published = 0
        for index in indexes ?? Array(0..<total) where index < total {
            let offset = UInt64(index) * chunk
            let length = Int(min(chunk, size - offset))
            // The chunk is read straight into the message, after room for the header.
            var message = [UInt8](repeating: 0, count: headerSize + length)
            var done = 0
            while done < length {
                let n = message.withUnsafeMutableBytes { pread(fd, $0.baseAddress.map { $0 + headerSize + done }, length - done, off_t(offset) + off_t(done)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw PropellerError(.systemCall, "proxy cache: read \(path): errno \(errno)") }
                done += n
            }
            if sums[Int(index)].isEmpty { sums[Int(index)] = Checksum.sha256(message[headerSize...]) }
            let header = BlobChunk.header(digestHex: digest.hex, index: index, total: total, blobSize: size, offset: offset,
                                          sha256: sums[Int(index)])
            message.replaceSubrange(0..<headerSize, with: header)
            if faults.dropIndex == index {
                faults.dropIndex = nil
                logger.notice("test fault: dropping a chunk", metadata: ["digest": "\(digest)", "index": "\(index)"])
                continue
            }
            if faults.corruptIndex == index {
                faults.corruptIndex = nil
                message[BlobChunk.headerSize] ^= 0xff
                logger.notice("test fault: corrupting a chunk", metadata: ["digest": "\(digest)", "index": "\(index)"])
            }
            try client.publish(topic, message, qos: 1)
            metrics.update {
                $0.chunksPublished += 1
                $0.bytesServed += UInt64(length)
            }
            published += 1
            try await client.waitForAcknowledgements(below: options.window)
        }
        cache.touch(digest)
        return published
    }

    /// Keeps a blob's chunk checksums (at most 4,096 blobs' worth, a few MB).
    private func rememberChecksums(_ sums: [[UInt8]], of digest: Digest) {
        guard !sums.contains(where: \.isEmpty) else { return }
        if chunkChecksums.count >= 4096 { chunkChecksums.removeAll(keepingCapacity: true) }
        chunkChecksums[digest] = sums
    }
}
