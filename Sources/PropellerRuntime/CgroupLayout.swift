import PropellerCore

/// Where the cgroup hierarchies are and where this process sits in each, read from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`.
public struct CgroupLayout: Hashable, Sendable {
    /// One mounted hierarchy.
    public struct Hierarchy: Hashable, Sendable {
        /// Controllers bound to it (`["cpu", "cpuacct"]`); empty for cgroup2.
        public var controllers: [String]
        /// Absolute directory of this process's own cgroup in the hierarchy.
        public var ownDirectory: String
    }

    public enum Mode: String, Sendable {
        /// Only cgroup2 is mounted (at /sys/fs/cgroup): every current distribution.
        case unified
        /// v1 controller hierarchies, possibly with a cgroup2 mount beside them (hybrid).
        case legacy
    }

    public var mode: Mode
    /// The cgroup2 hierarchy: the only one in unified mode; in hybrid mode it holds no
    /// controllers and tasks do not join it (see ``CgroupV1Driver``).
    public var unified: Hierarchy?
    /// v1 hierarchies keyed by controller name.
    public var v1: [String: Hierarchy]

    /// Reads the running system's layout.
    public static func current() throws -> CgroupLayout {
        try parse(mountinfo: FileIO.readString("/proc/self/mountinfo"), procCgroup: FileIO.readString("/proc/self/cgroup"))
    }

    /// Builds a layout from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    /// `rootPrefix` is prepended to every mount point (tests point it at a temp directory).
    public static func parse(mountinfo: String, procCgroup: String, rootPrefix: String = "") throws -> CgroupLayout {
        // Own paths per hierarchy: "ID:controllers:path"; "0::path" is cgroup2.
        var ownV1: [String: String] = [:]
        var ownUnified: String?
        for line in procCgroup.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[0] == "0" && parts[1].isEmpty {
                ownUnified = String(parts[2])
            } else {
                for c in parts[1].split(separator: ",") { ownV1[String(c)] = String(parts[2]) }
            }
        }

        var unified: Hierarchy?
        var v1: [String: Hierarchy] = [:]
        var unifiedAtDefault = false
        for line in mountinfo.split(separator: "\n") {
            // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
            // (split at the lone "-" field: a string separator goes through the generic
            // collection search, measurably slower at every container start)
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-") else { continue }
            let left = fields[..<dash]
            let right = Array(fields[(dash + 1)...])
            guard left.count >= 5, right.count >= 3 else { continue }
            let root = unescape(String(left[3]))
            let mountPoint = unescape(String(left[4]))
            let fstype = right[0]
            func ownDirectory(_ own: String) -> String {
                // Inside a cgroup namespace the mount's root may be a prefix of our path.
                var relative = own
                if root != "/" && relative.hasPrefix(root) { relative = String(relative.dropFirst(root.count)) }
                if relative.isEmpty || relative == "/" { return rootPrefix + mountPoint }
                return rootPrefix + mountPoint + (relative.hasPrefix("/") ? relative : "/" + relative)
            }
            if fstype == "cgroup2" {
                guard let own = ownUnified else { continue }
                unified = Hierarchy(controllers: [], ownDirectory: ownDirectory(own))
                if mountPoint == "/sys/fs/cgroup" { unifiedAtDefault = true }
            } else if fstype == "cgroup" {
                let options = right[2].split(separator: ",").map(String.init)
                let controllers = options.filter { !$0.contains("=") && !["rw", "ro", "clone_children", "noprefix", "xattr", "nsdelegate"].contains($0) }
                guard let first = controllers.first, let own = ownV1[first] else { continue }
                let h = Hierarchy(controllers: controllers, ownDirectory: ownDirectory(own))
                for c in controllers { v1[c] = h }
            }
        }
        if unified == nil && v1.isEmpty {
            throw PropellerError(.unsupported, "cgroups: no cgroup or cgroup2 filesystem is mounted")
        }
        let mode: Mode = (unifiedAtDefault || v1.isEmpty) ? .unified : .legacy
        return CgroupLayout(mode: mode, unified: unified, v1: mode == .unified ? [:] : v1)
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    private static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
               let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
