/// The ranges every number that arrives from the network must fall in, checked where it enters
/// (the REST API answers 422 naming the range), and the conversions that cannot trap wherever a
/// number is used (a proplet must survive a message the manager should never have sent).
///
/// A Swift integer conversion or multiplication that overflows stops the process: before these
/// checks, `"timeout_seconds": 1e300` in one API request crashed every proplet it reached.
public enum InputLimits {
    /// A task's or actor's timeout: more than 0, at most 366 days.
    public static let timeoutSeconds: ClosedRange<Double> = 0.001...(366 * 86_400)
    /// The time between SIGTERM and SIGKILL when a task is stopped: at most an hour.
    public static let graceSeconds: ClosedRange<Double> = 0...3_600
    /// CPU in thousandths of a core: at most 1,048,576 cores' worth.
    public static let cpuMillis: ClosedRange<UInt64> = 0...(1 << 30)
    /// Memory: at most 1 PiB.
    public static let memoryBytes: ClosedRange<UInt64> = 0...(1 << 50)
    /// Processes: the kernel's own ceiling (PID_MAX_LIMIT on 64-bit).
    public static let pids: ClosedRange<UInt64> = 0...4_194_304

    /// `value` when it is finite and within `range`, else an `.invalidArgument` error that names
    /// the field and the range.
    public static func check(_ value: Double, in range: ClosedRange<Double>, field: String, unit: String = "seconds") throws -> Double {
        guard value.isFinite, range.contains(value) else {
            throw PropellerError(.invalidArgument, "\(field): must be \(describe(range.lowerBound)) to \(describe(range.upperBound)) \(unit) (got \(value))")
        }
        return value
    }

    /// `value` when it is within `range`, else an `.invalidArgument` error that names the field
    /// and the range.
    public static func check(_ value: UInt64, in range: ClosedRange<UInt64>, field: String) throws -> UInt64 {
        guard range.contains(value) else {
            throw PropellerError(.invalidArgument, "\(field): must be \(range.lowerBound) to \(range.upperBound) (got \(value))")
        }
        return value
    }

    private static func describe(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
    }
}

extension Duration {
    /// `seconds` as a duration without a trap: NaN and negative values give zero, values above
    /// `limit` (by default about 292 years, far below what `Duration` holds) give `limit`.
    public static func saturating(seconds: Double, limit: Duration = .seconds(Int64(1) << 33)) -> Duration {
        guard seconds.isFinite, seconds > 0 else { return seconds == .infinity ? limit : .zero }
        let (limitSeconds, limitAttos) = limit.components
        let limitValue = Double(limitSeconds) + Double(limitAttos) / 1e18
        guard seconds < limitValue else { return limit }
        let whole = seconds.rounded(.down)
        return .seconds(Int64(whole)) + .nanoseconds(Int64(((seconds - whole) * 1e9).rounded(.down)))
    }

    /// Whole milliseconds, rounded up and clamped to `0...Int64.max`.
    public var clampedMilliseconds: Int64 {
        let (seconds, attos) = components
        if seconds < 0 || (seconds == 0 && attos <= 0) { return 0 }
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return .max }
        let extra = attos / 1_000_000_000_000_000 + (attos % 1_000_000_000_000_000 > 0 ? 1 : 0)
        let (total, overflowAdding) = ms.addingReportingOverflow(extra)
        return overflowAdding ? .max : total
    }
}
