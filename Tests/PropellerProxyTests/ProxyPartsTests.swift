import Foundation
import PropellerCore
import PropellerImage
@testable import PropellerProxy
import PropellerTestSupport
import Testing

@Suite("Proxy parts")
struct ProxyPartsTests {
    @Test func chunksRoundTripAndMalformedOnesAreRejected() throws {
        let payload: [UInt8] = Array("some bytes of a layer".utf8)
        let hex = String(repeating: "ab", count: 32)
        let sum = Checksum.sha256(payload[...])
        let message = BlobChunk.header(digestHex: hex, index: 2, total: 5, blobSize: 1000, offset: 128, sha256: sum) + payload
        let chunk = try #require(BlobChunk(parsing: message))
        #expect(chunk.digestHex == hex && chunk.index == 2 && chunk.total == 5 && chunk.blobSize == 1000 && chunk.offset == 128)
        #expect(chunk.sha256 == sum && Array(chunk.payload) == payload)
        #expect(message.count == BlobChunk.headerSize + payload.count)

        #expect(BlobChunk(parsing: Array(message.prefix(50))) == nil)  // truncated header
        var badMagic = message
        badMagic[0] = 0x58
        #expect(BlobChunk(parsing: badMagic) == nil)
        let beyond = BlobChunk.header(digestHex: hex, index: 0, total: 1, blobSize: 4, offset: 0, sha256: sum) + payload
        #expect(BlobChunk(parsing: beyond) == nil)  // payload past the blob's end
        let badIndex = BlobChunk.header(digestHex: hex, index: 5, total: 5, blobSize: 1000, offset: 0, sha256: sum) + payload
        #expect(BlobChunk(parsing: badIndex) == nil)
        let badHex = BlobChunk.header(digestHex: String(repeating: "zz", count: 32), index: 0, total: 1, blobSize: 1000, offset: 0, sha256: sum) + payload
        #expect(BlobChunk(parsing: badHex) == nil)
    }

    @Test func faultsAreOffUnlessNamed() {
        let none = FaultPlan(nil)
        #expect(none.dropIndex == nil && none.corruptIndex == nil)
        let some = FaultPlan("drop=3,corrupt=7,bogus=x")
        #expect(some.dropIndex == 3 && some.corruptIndex == 7)
    }

    @Test func theCacheEvictsLeastRecentlyUsedButNeverAPinnedBlob() throws {
        let dir = try TempDirectory("propeller-proxy-cache")
        defer { dir.remove() }
        let cache = try BlobCache(directory: dir.path, capBytes: 2500)
        var digests: [Digest] = []
        for i in 0..<3 {
            let bytes = [UInt8](repeating: UInt8(i), count: 1000)
            let digest = Digest(sha256: Checksum.sha256(bytes[...]))
            let writer = try cache.store.writer(for: digest)
            try bytes.withUnsafeBytes { try writer.write($0) }
            _ = try writer.commit()
            digests.append(digest)
            // Distinct, increasing use times.
            var times = [timespec(tv_sec: 1000 + i, tv_nsec: 0), timespec(tv_sec: 1000 + i, tv_nsec: 0)]
            _ = utimensat(AT_FDCWD, cache.store.path(for: digest), &times, 0)
        }
        cache.touch(digests[0])  // used just now: the newest
        cache.pin(digests[1])
        #expect(cache.evict() == 1)
        #expect(cache.contains(digests[0]) && cache.contains(digests[1]) && !cache.contains(digests[2]))
        cache.unpin(digests[1])
        let small = try BlobCache(directory: dir.path, capBytes: 1000)
        #expect(small.evict() == 1)
        #expect(small.contains(digests[0]) && !small.contains(digests[1]))
    }
}
