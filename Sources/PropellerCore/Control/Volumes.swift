#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A task's request for a volume: `--volume NAME:/target[:ro]`. `NAME` is a host volume when
/// some proplet offers one by that name (``HostVolume``); else a named volume the proplet keeps
/// under its data directory, made on first use and kept across tasks.
public struct VolumeMount: Codable, Sendable, Hashable {
    public var name: String
    /// Absolute, inside the container (``MountTarget``).
    public var target: String
    public var readOnly: Bool
    /// A named volume's size limit, set when it is made (a file system of its own, that size);
    /// nil: none. Not for host volumes.
    public var sizeBytes: UInt64?

    public init(name: String, target: String, readOnly: Bool = false, sizeBytes: UInt64? = nil) {
        self.name = name
        self.target = target
        self.readOnly = readOnly
        self.sizeBytes = sizeBytes
    }

    /// Parses `NAME:/target[:ro|:rw][:size=SIZE]`, checking the name, the target and the size.
    public init(parsing text: String) throws {
        var parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var readOnly = false
        var size: UInt64?
        while parts.count > 2, let last = parts.last, last == "ro" || last == "rw" || last.hasPrefix("size=") {
            if last.hasPrefix("size=") {
                size = try ByteSize(parsing: String(last.dropFirst(5))).bytes
            } else {
                readOnly = last == "ro"
            }
            parts.removeLast()
        }
        guard parts.count == 2 else {
            throw PropellerError(.invalidArgument, "invalid volume \"\(text)\": expected NAME:/PATH[:ro][:size=SIZE] (a host path cannot be named: ask the proplet's operator for a host volume)")
        }
        try self.init(name: VolumeName.check(parts[0], what: "volume \"\(text)\""), target: MountTarget.check(parts[1], what: "volume \"\(text)\""),
                      readOnly: readOnly, sizeBytes: size)
        try checkSize()
    }

    /// The size limit, when there is one, is 16 MiB to 16 TiB (an ext4 file system's range here).
    public func checkSize() throws {
        if let sizeBytes, !(16 << 20 ... 16 << 40).contains(sizeBytes) {
            throw PropellerError(.invalidArgument, "volume \(name): a size limit is 16M to 16T, not \(ByteSize(bytes: sizeBytes))")
        }
    }

    public var description: String { "\(name):\(target)\(readOnly ? ":ro" : "")" }
}

/// `--secret NAME[:/target]`: a secret of the manager's store as a read-only file in the task
/// (`/run/secrets/NAME` unless told), on a tmpfs of its own, gone with the task.
public struct SecretMount: Codable, Sendable, Hashable {
    public var name: String
    public var target: String

    public init(name: String, target: String? = nil) {
        self.name = name
        self.target = target ?? "/run/secrets/" + name
    }

    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let name = try VolumeName.check(parts.first ?? "", what: "secret \"\(text)\"")
        self.init(name: name, target: try parts.count == 2 ? MountTarget.check(parts[1], what: "secret \"\(text)\"") : nil)
    }
}

/// A secret's value as it travels to the one proplet that runs the task (``StartTask``), and
/// only there: never stored with the task, never logged.
public struct SecretValue: Codable, Sendable, Hashable {
    public var name: String
    /// The bytes (base64 in JSON).
    public var value: Data

    public init(name: String, value: Data) {
        self.name = name
        self.value = value
    }
}

/// A named volume as its proplet reports it in heartbeats.
public struct NamedVolumeInfo: Codable, Sendable, Hashable {
    public var name: String
    /// Bytes of its files, as last measured (every 30 s at most).
    public var sizeBytes: UInt64
    /// Tasks or actor executions running with it now.
    public var inUse: Int

    public init(name: String, sizeBytes: UInt64, inUse: Int) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.inUse = inUse
    }
}

/// `control/proplet/{id}/volume`: remove a named volume (refused, and logged, while a task
/// uses it; the heartbeats show what is left).
public struct VolumeCommand: Codable, Sendable, Hashable {
    public enum Action: String, Codable, Sendable { case remove }
    public var action: Action
    public var name: String

    public init(action: Action, name: String) {
        self.action = action
        self.name = name
    }
}

/// `--tmpfs /target[:size=64M]`: a new tmpfs for the task alone, charged to its memory.
public struct TmpfsMount: Codable, Sendable, Hashable {
    public var target: String
    public var sizeBytes: UInt64?

    public init(target: String, sizeBytes: UInt64? = nil) {
        self.target = target
        self.sizeBytes = sizeBytes
    }

    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard let first = parts.first else { throw PropellerError(.invalidArgument, "invalid tmpfs \"\(text)\": expected /PATH[:size=64M]") }
        let target = try MountTarget.check(first, what: "tmpfs \"\(text)\"")
        var size: UInt64?
        if parts.count == 2 {
            guard parts[1].hasPrefix("size=") else { throw PropellerError(.invalidArgument, "invalid tmpfs \"\(text)\": the only option is size=SIZE") }
            let parsed = try ByteSize(parsing: String(parts[1].dropFirst(5))).bytes
            guard parsed >= 4096 else { throw PropellerError(.invalidArgument, "invalid tmpfs \"\(text)\": size below 4k") }
            size = parsed
        }
        self.init(target: target, sizeBytes: size)
    }
}

/// A host directory a proplet's operator offers to tasks under a name:
/// `propeller proplet --host-volume data=/srv/data[:ro]`. Announced by name and mode only; the
/// path stays on the proplet.
public struct HostVolume: Codable, Sendable, Hashable {
    public var name: String
    /// Offered read-only: a task that asks to write to it is never placed there.
    public var readOnly: Bool

    public init(name: String, readOnly: Bool) {
        self.name = name
        self.readOnly = readOnly
    }

    /// Parses `NAME=/host/path[:ro]` into the offer and its host path.
    public static func parse(_ text: String) throws -> (volume: HostVolume, path: String) {
        let kv = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2 else { throw PropellerError(.invalidArgument, "invalid host volume \"\(text)\": expected NAME=/PATH[:ro]") }
        var path = kv[1]
        var readOnly = false
        if path.hasSuffix(":ro") || path.hasSuffix(":rw") {
            readOnly = path.hasSuffix(":ro")
            path.removeLast(3)
        }
        let name = try VolumeName.check(kv[0], what: "host volume \"\(text)\"")
        guard path.hasPrefix("/"), !path.contains("\0"), !path.split(separator: "/").contains(where: { $0 == ".." }) else {
            throw PropellerError(.invalidArgument, "invalid host volume \"\(text)\": the path must be absolute, without ..")
        }
        return (HostVolume(name: name, readOnly: readOnly), path)
    }
}

/// The names of volumes: 1 to 64 letters, digits, `_`, `.` and `-`, starting with a letter or digit.
public enum VolumeName {
    public static func isValid(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 64 else { return false }
        func allowed(_ c: Unicode.Scalar) -> Bool { c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "." || c == "-") }
        return allowed(first) && first != "." && first != "-" && first != "_" && name.unicodeScalars.allSatisfy(allowed)
    }

    public static func check(_ name: String, what: String) throws -> String {
        guard isValid(name) else {
            throw PropellerError(.invalidArgument, "invalid \(what): the name \"\(name)\" must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        }
        return name
    }
}

/// Where a volume or tmpfs may be mounted in a container.
public enum MountTarget {
    /// Directories the runtime mounts itself: a volume on or below them would hide or replace
    /// the kernel's interfaces, so it is refused.
    public static let reserved = ["/proc", "/sys", "/dev"]

    /// The target, normalised (no trailing or doubled `/`), or an error that says why not:
    /// it must be absolute, not `/`, without `.` or `..`, and not on or below ``reserved``.
    public static func check(_ path: String, what: String) throws -> String {
        func refuse(_ why: String) -> PropellerError { PropellerError(.invalidArgument, "invalid \(what): the target \"\(path)\" \(why)") }
        guard path.hasPrefix("/") else { throw refuse("must be an absolute path") }
        guard !path.contains("\0"), path.utf8.count <= 1024 else { throw refuse("is too long or holds a NUL byte") }
        let parts = path.split(separator: "/")
        guard !parts.isEmpty else { throw refuse("cannot be the root") }
        guard !parts.contains(where: { $0 == "." || $0 == ".." }) else { throw refuse("may not contain . or ..") }
        let normal = "/" + parts.joined(separator: "/")
        if let r = reserved.first(where: { normal == $0 || normal.hasPrefix($0 + "/") }) { throw refuse("is on or below \(r), which the runtime mounts") }
        return normal
    }

    /// Checks a set of mounts together: at most `limit`, no target twice.
    public static func checkDistinct(_ targets: [String], limit: Int = 64) throws {
        guard targets.count <= limit else { throw PropellerError(.invalidArgument, "too many volumes and tmpfs mounts: \(targets.count), at most \(limit)") }
        var seen = Set<String>()
        for t in targets where !seen.insert(t).inserted { throw PropellerError(.invalidArgument, "two mounts at \(t)") }
    }
}
