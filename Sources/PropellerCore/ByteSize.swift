/// A size in bytes parsed the way operators write it: `64M`, `1.5G`, `512k`, `1048576`.
///
/// Suffixes are powers of 1024 (`k`, `m`, `g`, `t`, case-insensitive, with an optional `b`, `i`
/// or `ib`: `64MiB` and `64mb` both mean 64 × 1024²). Fractions are allowed with a suffix and
/// rounded down to whole bytes.
public struct ByteSize: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    public init(parsing text: String) throws {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw PropellerError(.invalidArgument, "empty size") }
        var numberPart = Substring(trimmed)
        var suffix = ""
        while let last = numberPart.last, last.isLetter {
            suffix.insert(last, at: suffix.startIndex)
            numberPart = numberPart.dropLast()
        }
        let multiplier: UInt64
        switch suffix.lowercased() {
        case "", "b": multiplier = 1
        case "k", "kb", "ki", "kib": multiplier = 1 << 10
        case "m", "mb", "mi", "mib": multiplier = 1 << 20
        case "g", "gb", "gi", "gib": multiplier = 1 << 30
        case "t", "tb", "ti", "tib": multiplier = 1 << 40
        default:
            throw PropellerError(.invalidArgument, "invalid size \"\(text)\": unknown unit \"\(suffix)\" (use b, k, m, g or t)")
        }
        guard !numberPart.isEmpty, numberPart.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              numberPart.filter({ $0 == "." }).count <= 1
        else {
            throw PropellerError(.invalidArgument, "invalid size \"\(text)\": expected a number with an optional unit, like 64M, 1.5G or 512k")
        }
        if let whole = UInt64(numberPart) {
            let (product, overflow) = whole.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { throw PropellerError(.invalidArgument, "invalid size \"\(text)\": too large") }
            bytes = product
        } else if let fraction = Double(numberPart), fraction.isFinite {
            let value = fraction * Double(multiplier)
            guard value < 1.8e19 else { throw PropellerError(.invalidArgument, "invalid size \"\(text)\": too large") }
            bytes = UInt64(value)
        } else {
            throw PropellerError(.invalidArgument, "invalid size \"\(text)\"")
        }
    }

    public static func < (a: ByteSize, b: ByteSize) -> Bool { a.bytes < b.bytes }

    /// Human form with the largest unit that keeps a short number: `64 MiB`, `1.5 GiB`, `512 B`.
    public var description: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        if rounded == rounded.rounded() { return "\(Int(rounded)) \(units[unit])" }
        return "\(rounded) \(units[unit])"
    }
}

extension String {
    /// The string without leading and trailing whitespace and newlines.
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s = s.dropFirst() }
        while s.last?.isWhitespace == true { s = s.dropLast() }
        return String(s)
    }
}
