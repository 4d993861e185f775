import CCap
import PropellerCore

/// A set of Linux capabilities, as a 64-bit mask (bit N = capability N).
///
/// Names are parsed with libcap (`cap_from_name`), so every name the installed libcap knows is
/// accepted, with or without the `CAP_` prefix and in any case (`NET_RAW`, `cap_net_raw`).
public struct CapabilitySet: Hashable, Sendable, CustomStringConvertible {
    public var mask: UInt64

    public init(mask: UInt64) { self.mask = mask }

    /// Docker's default set of 14 minus NET_RAW: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
    /// SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP (`00000000a80405fb`).
    public static let defaultSet = CapabilitySet(mask: 0x0000_0000_a804_05fb)

    /// Every capability the running kernel knows.
    public static var all: CapabilitySet {
        let last = Capabilities.lastCapability
        return CapabilitySet(mask: last >= 63 ? UInt64.max : (UInt64(1) << UInt64(last + 1)) - 1)
    }

    public func contains(_ cap: Int) -> Bool { cap >= 0 && cap < 64 && mask & (1 << UInt64(cap)) != 0 }
    public mutating func insert(_ cap: Int) { mask |= 1 << UInt64(cap) }
    public mutating func remove(_ cap: Int) { mask &= ~(1 << UInt64(cap)) }

    /// Applies `--cap-add`/`--cap-drop` lists to this set. `ALL` in add keeps every capability;
    /// `ALL` in drop starts from nothing (then adds are applied), as Docker does.
    public func adjusted(adding add: [String], dropping drop: [String]) throws -> CapabilitySet {
        var result = self
        if drop.contains(where: { $0.uppercased() == "ALL" }) { result.mask = 0 }
        for name in drop where name.uppercased() != "ALL" { result.remove(try Capabilities.number(forName: name)) }
        if add.contains(where: { $0.uppercased() == "ALL" }) { result = .all }
        for name in add where name.uppercased() != "ALL" { result.insert(try Capabilities.number(forName: name)) }
        return result
    }

    /// Capability names, upper case without prefix, in number order.
    public var names: [String] {
        (0..<64).filter(contains).map { Capabilities.name(forNumber: $0) }
    }

    /// As `/proc/PID/status` shows it: 16 hex digits.
    public var description: String {
        let hex = String(mask, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Capability name lookups through libcap and the kernel's limit.
public enum Capabilities {
    /// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
    public static let lastCapability: Int = {
        if let text = try? FileIO.readString("/proc/sys/kernel/cap_last_cap"),
           let value = Int(text.trimmingWhitespace()) {
            return value
        }
        return 40
    }()

    /// The number of a capability name (`NET_RAW`, `CAP_NET_RAW`, `cap_net_raw`).
    public static func number(forName name: String) throws -> Int {
        var lower = name.lowercased()
        if !lower.hasPrefix("cap_") { lower = "cap_" + lower }
        guard lower.dropFirst(4).allSatisfy({ $0.isLetter || $0 == "_" || $0.isNumber }) else {
            throw PropellerError(.invalidArgument, "unknown capability \"\(name)\"")
        }
        var value: cap_value_t = 0
        guard cap_from_name(lower, &value) == 0, value >= 0, value < 64 else {
            throw PropellerError(.invalidArgument, "unknown capability \"\(name)\"")
        }
        if Int(value) > lastCapability {
            throw PropellerError(.unsupported, "capability \"\(name)\" is not known to this kernel")
        }
        return Int(value)
    }

    /// The upper-case name of capability `number` without the `CAP_` prefix.
    public static func name(forNumber number: Int) -> String {
        guard let raw = cap_to_name(cap_value_t(number)) else { return "\(number)" }
        defer { cap_free(UnsafeMutableRawPointer(raw)) }
        let name = String(cString: raw).uppercased()
        return name.hasPrefix("CAP_") ? String(name.dropFirst(4)) : name
    }
}
