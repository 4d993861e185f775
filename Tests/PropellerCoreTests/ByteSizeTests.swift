import PropellerCore
import Testing

@Suite("Sizes and durations as operators write them")
struct ByteSizeTests {
    static let sizes: [(String, UInt64)] = [
        ("64M", 64 << 20), ("1.5G", 3 << 29), ("512k", 512 << 10), ("1048576", 1 << 20),
        ("64MiB", 64 << 20), ("64mb", 64 << 20), ("2g", 2 << 30), (" 10K ", 10 << 10),
        ("0", 0), ("1t", 1 << 40), ("7b", 7),
    ]

    @Test(arguments: sizes)
    func parsesSizes(text: String, bytes: UInt64) throws {
        #expect(try ByteSize(parsing: text).bytes == bytes)
    }

    @Test(arguments: ["banana", "", "M", "12Q", "-5M", "1.2.3M", "99999999999999999999", "20000000000T", "1e3"])
    func rejectsBadSizes(text: String) {
        #expect(throws: PropellerError.self) { try ByteSize(parsing: text) }
    }

    @Test func describesSizesForPeople() {
        #expect(ByteSize(bytes: 32 << 20).description == "32 MiB")
        #expect(ByteSize(bytes: 3 << 29).description == "1.5 GiB")
        #expect(ByteSize(bytes: 512).description == "512 B")
    }

    static let durations: [(String, Duration)] = [
        ("500ms", .milliseconds(500)), ("30s", .seconds(30)), ("2m", .seconds(120)), ("1h30m", .seconds(5400)),
        ("1.5s", .milliseconds(1500)), ("250us", .microseconds(250)),
    ]

    @Test(arguments: durations)
    func parsesDurations(text: String, expected: Duration) throws {
        #expect(try DurationParsing.parse(text) == expected)
    }

    @Test(arguments: ["30", "", "5x", "s", "1..2s", "-1s"])
    func rejectsBadDurations(text: String) {
        #expect(throws: PropellerError.self) { try DurationParsing.parse(text) }
    }

    @Test func formatsDurations() {
        #expect(DurationParsing.format(.milliseconds(500)) == "500ms")
        #expect(DurationParsing.format(.seconds(30)) == "30s")
        #expect(DurationParsing.format(.seconds(120)) == "2m")
    }

    @Test func containerIDsAreRandomHexAndValidated() throws {
        let a = ContainerID(), b = ContainerID()
        #expect(a != b)
        #expect(a.hex.count == 64 && a.hex.allSatisfy(\.isHexDigit))
        #expect(a.short.count == 12)
        #expect(try ContainerID(validating: a.hex) == a)
        #expect(throws: PropellerError.self) { try ContainerID(validating: "../../etc") }
        #expect(throws: PropellerError.self) { try ContainerID(validating: "ABCDEF0123456") }
    }
}

@Suite("Digests and SHA-256")
struct DigestTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(input: String, hex: String) {
        #expect(SHA256.hash(Array(input.utf8)).hexString == hex)
    }

    @Test func streamingMatchesOneShot() {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var h = SHA256()
        var i = 0
        for size in [1, 63, 64, 65, 1000, 4096] where i < data.count {
            h.update(Array(data[i..<min(data.count, i + size)]))
            i += size
        }
        h.update(Array(data[i...]))
        #expect(h.finalize() == SHA256.hash(data))
        // A million 'a's (FIPS 180-2 test vector).
        #expect(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000)).hexString == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func digestsAreValidatedBeforeUse() throws {
        let d = try Digest(validating: "sha256:" + String(repeating: "ab", count: 32))
        #expect(d.description.count == 71)
        for bad in ["sha256:../../etc/passwd", "md5:abcd", "sha256:" + String(repeating: "AB", count: 32), "sha256:abc", ""] {
            #expect(throws: PropellerError.self) { try Digest(validating: bad) }
        }
    }
}

@Suite("Image references as Docker parses them")
struct ImageReferenceTests {
    static let cases: [(String, String, String, String?)] = [
        ("busybox", "docker.io", "library/busybox", "latest"),
        ("team/app:v2", "docker.io", "team/app", "v2"),
        ("127.0.0.1:5000/app:v2", "127.0.0.1:5000", "app", "v2"),
        ("localhost/a/b/c", "localhost", "a/b/c", "latest"),
        ("registry.example.com/ns/app", "registry.example.com", "ns/app", "latest"),
        ("localhost:5000/app", "localhost:5000", "app", "latest"),
        ("my-reg.io:443/x__y/z.w-v:1.0_rc", "my-reg.io:443", "x__y/z.w-v", "1.0_rc"),
    ]

    @Test(arguments: cases)
    func parses(text: String, registry: String, repository: String, tag: String?) throws {
        let r = try ImageReference(parsing: text)
        #expect(r.registry == registry)
        #expect(r.repository == repository)
        #expect(r.tag == tag)
    }

    @Test func digestsPinAndWin() throws {
        let hex = String(repeating: "a", count: 64)
        let r = try ImageReference(parsing: "127.0.0.1:5000/app:v1@sha256:\(hex)")
        #expect(r.tag == "v1")
        #expect(r.manifestReference == "sha256:\(hex)")
        #expect(try ImageReference(parsing: "app@sha256:\(hex)").tag == nil)
    }

    @Test func loopbackAndHub() throws {
        #expect(try ImageReference(parsing: "127.0.0.1:5000/a").isLoopback)
        #expect(try ImageReference(parsing: "localhost/a").isLoopback)
        #expect(try !ImageReference(parsing: "example.com/a").isLoopback)
        #expect(try ImageReference(parsing: "busybox").apiHost == "registry-1.docker.io")
    }

    @Test(arguments: ["", "UPPER/case", "a//b", "app:", "app:-bad", "app@sha256:xyz", "a/../b", "-a/b", "a:b:c/d", "app:tag with space", "/abs",
                      // Non-ASCII digits, letters and hex digits are not ASCII ones.
                      "127.0.0.1:\u{663}000/app", "app:v\u{663}", "caf\u{E9}/app", "r\u{E9}g.io/app", "[::\u{FF41}]:5000/app", "app:\u{FF11}"])
    func rejects(text: String) {
        #expect(throws: PropellerError.self) { try ImageReference(parsing: text) }
    }
}
