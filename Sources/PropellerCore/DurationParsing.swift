/// Parses durations the way Go and Docker print them: `500ms`, `30s`, `2m`, `1h30m`, `1.5s`.
///
/// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d` (24 h: token lifetimes). A bare number is rejected: `30` could mean
/// seconds or milliseconds, and guessing wrong kills a task early.
public enum DurationParsing {
    public static func parse(_ text: String) throws -> Duration {
        let input = text.trimmingWhitespace()
        guard !input.isEmpty else { throw PropellerError(.invalidArgument, "empty duration") }
        var total: Double = 0
        var rest = Substring(input)
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            guard let value = Double(number), value.isFinite else {
                throw PropellerError(.invalidArgument, "invalid duration \"\(text)\": expected a number with a unit, like 500ms, 30s or 2m")
            }
            let scale: Double
            switch unit {
            case "ns": scale = 1e-9
            case "us", "µs": scale = 1e-6
            case "ms": scale = 1e-3
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "d": scale = 86400
            case "":
                throw PropellerError(.invalidArgument, "invalid duration \"\(text)\": missing unit (ms, s, m or h)")
            default:
                throw PropellerError(.invalidArgument, "invalid duration \"\(text)\": unknown unit \"\(unit)\" (use ms, s, m, h or d)")
            }
            total += value * scale
        }
        guard total < 1e9 else { throw PropellerError(.invalidArgument, "invalid duration \"\(text)\": too long") }
        let nanos = Int64((total * 1e9).rounded())
        return .nanoseconds(nanos)
    }

    /// `parse`, as seconds.
    public static func seconds(_ text: String) throws -> Double {
        let d = try parse(text)
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Short form for messages: `500ms`, `30s`, `2m`, `1h5m`.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attos) = duration.components
        let ms = seconds * 1000 + attos / 1_000_000_000_000_000
        if ms < 1000 || ms % 1000 != 0 { return ms < 1000 ? "\(ms)ms" : "\(Double(ms) / 1000)s" }
        let s = ms / 1000
        if s < 60 || s % 60 != 0 { return s < 60 ? "\(s)s" : "\(s / 60)m\(s % 60)s" }
        let m = s / 60
        if m < 60 || m % 60 != 0 { return m < 60 ? "\(m)m" : "\(m / 60)h\(m % 60)m" }
        return "\(m / 60)h"
    }
}
