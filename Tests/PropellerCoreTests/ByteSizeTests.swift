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
