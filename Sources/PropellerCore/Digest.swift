/// A content digest, `sha256:` followed by 64 lowercase hex digits.
///
/// Digests become file names in the content store, so nothing else is accepted: validating one
/// is the only way to make one from outside text.
public struct Digest: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The 64 hex digits.
    public let hex: String

    public init(validating text: String) throws {
        guard text.hasPrefix("sha256:") else {
            throw PropellerError(.invalidArgument, "invalid digest \"\(text.prefix(80))\": only sha256 digests are supported")
        }
        let hex = text.dropFirst(7)
        guard hex.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw PropellerError(.invalidArgument, "invalid digest \"\(text.prefix(80))\": expected sha256: and 64 lowercase hex digits")
        }
        self.hex = String(hex)
    }

    /// The digest of finished SHA-256 output.
    public init(sha256 bytes: [UInt8]) {
        precondition(bytes.count == 32, "a SHA-256 digest has 32 bytes")
        hex = bytes.hexString
    }

    public var description: String { "sha256:" + hex }

    public init(from decoder: any Decoder) throws {
        try self.init(validating: decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
