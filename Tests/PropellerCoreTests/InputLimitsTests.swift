import Foundation
import PropellerCore
import Testing

@Suite("Input limits and trap-free conversions")
struct InputLimitsTests {
    @Test(arguments: [1e300, -1, 0, .nan, .infinity, 31_622_401])
    func timeoutsOutOfRangeAreRefusedWithTheRange(_ value: Double) {
        let error = #expect(throws: PropellerError.self) { try InputLimits.check(value, in: InputLimits.timeoutSeconds, field: "timeout_seconds") }
        #expect(error?.message.contains("timeout_seconds: must be 0.001 to 31622400 seconds") == true, "\(String(describing: error))")
    }

    @Test func saturatingDurationsNeverTrap() {
        #expect(Duration.saturating(seconds: 1e300) == .seconds(Int64(1) << 33))
        #expect(Duration.saturating(seconds: .infinity) == .seconds(Int64(1) << 33))
        #expect(Duration.saturating(seconds: .nan) == .zero)
        #expect(Duration.saturating(seconds: -5) == .zero)
        #expect(Duration.saturating(seconds: 1.5) == .milliseconds(1500))
        #expect(Duration.seconds(Int64.max).clampedMilliseconds == .max)
        #expect(Duration.milliseconds(-3).clampedMilliseconds == 0)
        #expect(Duration.microseconds(1500).clampedMilliseconds == 2)
    }

    /// A forged chunk whose offset is near UInt64.max overflowed `offset + size` and trapped.
    @Test func aChunkWithAnOverflowingOffsetIsRefusedNotATrap() {
        let header = BlobChunk.header(digestHex: String(repeating: "a", count: 64), index: 0, total: 1, blobSize: 10, offset: UInt64.max - 2, sha256: [UInt8](repeating: 0, count: 32))
        #expect(BlobChunk(parsing: header + [1, 2, 3, 4]) == nil)
        let fine = BlobChunk.header(digestHex: String(repeating: "a", count: 64), index: 0, total: 1, blobSize: 4, offset: 0, sha256: [UInt8](repeating: 0, count: 32))
        #expect(BlobChunk(parsing: fine + [1, 2, 3, 4]) != nil)
    }

    @Test(arguments: [("127.0.0.1:5000", true), ("127.1.2.3", true), ("localhost:5000", true), ("[::1]:5000", true),
                      ("127.evil.example", false), ("127.0.0.1.evil.example:5000", false), ("127.0.0.256", false), ("1270.0.0.1", false),
                      ("127.0.0", false), ("128.0.0.1", false), ("localhost.evil.example", false)])
    func loopbackMeansAnAddressNotAPrefix(_ host: String, _ loopback: Bool) {
        #expect(ImageReference.isLoopbackHost(host) == loopback, "\(host)")
    }
}
