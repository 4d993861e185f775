import Foundation
import PropellerCore
@testable import PropellerImage
import PropellerTestSupport
import Testing

@Suite("Registry client pieces")
struct RegistryClientTests {
    @Test func parsesBearerChallenges() {
        let p = RegistryClient.parseChallenge(#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#)
        #expect(p["realm"] == "https://auth.example.com/token")
        #expect(p["service"] == "registry.example.com")
        #expect(p["scope"] == "repository:team/app:pull,push")
        #expect(RegistryClient.parseChallenge(#"Basic realm="reg""#)["realm"] == "reg")
        #expect(RegistryClient.parseChallenge(#"Bearer realm="a\"b",error="insufficient_scope""#)["realm"] == "a\"b")
    }

    @Test func percentEncodesQueryValues() {
        #expect(RegistryClient.percentEncode("repository:team/app:pull,push") == "repository%3Ateam%2Fapp%3Apull%2Cpush")
        #expect(RegistryClient.percentEncode("a-b_c.d~e") == "a-b_c.d~e")
    }

    @Test func httpsUnlessLoopbackOrInsecure() throws {
        let client = RegistryClient(insecureRegistries: ["lab.internal:5000"])
        #expect(client.baseURL(try ImageReference(parsing: "example.com/app")) == "https://example.com/v2/app")
        #expect(client.baseURL(try ImageReference(parsing: "127.0.0.1:5000/app")) == "http://127.0.0.1:5000/v2/app")
        #expect(client.baseURL(try ImageReference(parsing: "lab.internal:5000/x/y")) == "http://lab.internal:5000/v2/x/y")
        #expect(client.baseURL(try ImageReference(parsing: "busybox")) == "https://registry-1.docker.io/v2/library/busybox")
    }

    @Test func dockerConfigAuthsAreRead() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        writeFile(tmp.path + "/config.json", #"{"auths": {"reg.example.com": {"auth": "dXNlcjpwYTpzcw=="}, "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}}}"#)
        let env = ["DOCKER_CONFIG": tmp.path]
        #expect(RegistryCredentials.fromDockerConfig(registry: "reg.example.com", environment: env) == RegistryCredentials(username: "user", password: "pa:ss"))
        #expect(RegistryCredentials.fromDockerConfig(registry: "docker.io", environment: env) == RegistryCredentials(username: "hub", password: "pw"))
        #expect(RegistryCredentials.fromDockerConfig(registry: "other.io", environment: env) == nil)
    }

    @Test func blobsAreStoredOnlyUnderTheirDigest() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let store = try ContentStore(root: tmp.path + "/content")
        let data = Array("hello blob".utf8)
        let digest = Digest(sha256: SHA256.hash(data))
        let good = try store.writer(for: digest, size: UInt64(data.count))
        try data.withUnsafeBytes { try good.write($0) }
        _ = try good.commit()
        #expect(store.contains(digest))
        let other = try Digest(validating: "sha256:" + String(repeating: "1", count: 64))
        let bad = try store.writer(for: other)
        try data.withUnsafeBytes { try bad.write($0) }
        #expect(throws: PropellerError.self) { _ = try bad.commit() }
        #expect(!store.contains(other))
        let tooLong = try store.writer(for: other, size: 3)
        #expect(throws: PropellerError.self) { try data.withUnsafeBytes { try tooLong.write($0) } }
        tooLong.abort()
        #expect(store.list() == [digest])
    }
}

@Suite("libcrypto hashing agrees with the reference SHA-256")
struct StreamHasherTests {
    @Test(arguments: [0, 1, 55, 56, 64, 1000, 100_000])
    func sameDigest(count: Int) {
        let data = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        let fast = StreamHasher()
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let end = min(buffer.count, offset + 777)
                fast.update(UnsafeRawBufferPointer(rebasing: buffer[offset..<end]))
                offset = end
            }
        }
        #expect(fast.finalize() == SHA256.hash(data))
    }
}

@Suite("Blob downloads survive a cut connection")
struct BlobResumeTests {
    @Test func aCutDownloadResumesWithRange() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let blob = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        let digest = Digest(sha256: SHA256.hash(Array(blob)))
        let server = try ScriptedHTTPServer { request in
            guard request.path == "/v2/app/blobs/\(digest)" else { return .init(status: 404) }
            if let range = request.headers["range"], range.hasPrefix("bytes="),
               let start = Int(range.dropFirst(6).prefix { $0 != "-" }) {
                return .init(status: 206, headers: ["Content-Range": "bytes \(start)-\(blob.count - 1)/\(blob.count)"],
                             body: blob.subdata(in: start..<blob.count))
            }
            return .init(status: 200, body: blob, cutAfter: 100_000)
        }
        defer { server.stop() }
        let store = try ContentStore(root: tmp.path + "/content")
        let ref = try ImageReference(parsing: "127.0.0.1:\(server.port)/app:v1")
        try RegistryClient().fetchBlob(ref, digest, size: Int64(blob.count), into: store)
        #expect(store.contains(digest))
        let ranges = server.requests.compactMap { $0.headers["range"] }
        #expect(ranges.count == 1)
        #expect(ranges.first.map { $0.hasPrefix("bytes=") && $0 != "bytes=0-" } == true, "\(ranges)")
    }

    @Test func aServerThatIgnoresRangeStartsOver() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let blob = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 11) })
        let digest = Digest(sha256: SHA256.hash(Array(blob)))
        let attempts = ScriptedCounter()
        let server = try ScriptedHTTPServer { _ in
            // First answer is cut; later ones ignore Range and send everything with 200.
            attempts.increment() == 1 ? .init(status: 200, body: blob, cutAfter: 50_000) : .init(status: 200, body: blob)
        }
        defer { server.stop() }
        let store = try ContentStore(root: tmp.path + "/content")
        let ref = try ImageReference(parsing: "127.0.0.1:\(server.port)/app:v1")
        try RegistryClient().fetchBlob(ref, digest, size: Int64(blob.count), into: store)
        #expect(store.contains(digest))
    }
}

final class ScriptedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

@Suite("Image indexes resolve to this platform")
struct IndexResolutionTests {
    func descriptor(_ hexDigit: Character, _ platform: Platform?) throws -> Descriptor {
        Descriptor(mediaType: MediaType.ociManifest, digest: try Digest(validating: "sha256:" + String(repeating: hexDigit, count: 64)),
                   size: 10, annotations: nil, platform: platform)
    }

    @Test func picksThisPlatformAndExplainsWhenAbsent() throws {
        let arm = Platform(architecture: "arm64", os: "linux", variant: "v8")
        let here = Platform.current
        let index = ImageIndex(schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [try descriptor("a", arm), try descriptor("b", here)])
        #expect(try index.manifestForThisPlatform("x").platform == here)
        let foreign = ImageIndex(schemaVersion: 2, mediaType: nil, manifests: [try descriptor("a", Platform(architecture: "s390x", os: "linux"))])
        let error = #expect(throws: PropellerError.self) { try foreign.manifestForThisPlatform("idx") }
        #expect(error?.message.contains("linux/s390x") == true)
        // A single manifest without a platform is taken as is (umoci and skopeo write those).
        let single = ImageIndex(schemaVersion: 2, mediaType: nil, manifests: [try descriptor("c", nil)])
        #expect(try single.manifestForThisPlatform("one").digest.hex.hasPrefix("ccc"))
    }
}
