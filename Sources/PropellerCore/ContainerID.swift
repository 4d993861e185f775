/// A container's identity: 32 random bytes shown as 64 lowercase hex digits, like Docker's.
public struct ContainerID: Hashable, Sendable, CustomStringConvertible {
    public let hex: String

    /// A new random id.
    public init() {
        var generator = SystemRandomNumberGenerator()
        var s = ""
        s.reserveCapacity(64)
        for _ in 0..<4 {
            let word = generator.next() as UInt64
            let part = String(word, radix: 16)
            s += String(repeating: "0", count: 16 - part.count) + part
        }
        hex = s
    }

    /// Validates an id given by a caller: 12 to 64 lowercase hex digits. An id becomes a path
    /// component (a cgroup name), so nothing else is accepted.
    public init(validating text: String) throws {
        guard (12...64).contains(text.count), text.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            throw PropellerError(.invalidArgument, "invalid container id \"\(text)\": expected 12 to 64 lowercase hex digits")
        }
        hex = text
    }

    /// The first 12 digits, used as the default hostname.
    public var short: String { String(hex.prefix(12)) }
    public var description: String { hex }
}
