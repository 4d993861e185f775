#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// Everything needed to start one container with ``ContainerRuntime``.
public struct ContainerSpec: Sendable {
    public enum NetworkMode: String, Sendable, CaseIterable {
        /// A new network namespace with only loopback, brought up (the default).
        case none
        /// The host's network namespace.
        case host
    }

    public enum SeccompPolicy: Sendable, Hashable {
        /// ``SeccompProfile/defaultProfile``.
        case `default`
        /// No filter at all.
        case unconfined
        /// A profile read from a file.
        case profile(SeccompProfile)
    }

    /// A resource limit (`setrlimit`) set in the container before exec.
    public struct ResourceLimit: Hashable, Sendable {
        public var resource: Int32
        public var soft: UInt64
        public var hard: UInt64

        public init(resource: Int32, soft: UInt64, hard: UInt64) {
            self.resource = resource
            self.soft = soft
            self.hard = hard
        }

        /// RLIMIT names accepted by `--ulimit` (Docker's spelling).
        public static let names: [String: Int32] = [
            // Linux's generic RLIMIT_* numbers (x86_64 and arm64).
            "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
            "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14,
            "rttime": 15,
        ]

        /// Parses `NAME=SOFT[:HARD]` (`nofile=2048:4096`, `-1` or `unlimited` for no limit).
        public init(parsing text: String) throws {
            let kv = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, let resource = Self.names[kv[0].lowercased()] else {
                throw PropellerError(.invalidArgument, "invalid ulimit \"\(text)\": expected NAME=SOFT[:HARD] with NAME one of \(Self.names.keys.sorted().joined(separator: ", "))")
            }
            func value(_ s: String) throws -> UInt64 {
                if s == "-1" || s == "unlimited" { return UInt64.max }
                guard let v = UInt64(s) else { throw PropellerError(.invalidArgument, "invalid ulimit \"\(text)\": \"\(s)\" is not a number") }
                return v
            }
            let values = kv[1].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let soft = try value(values[0])
            let hard = values.count == 2 ? try value(values[1]) : soft
            guard soft <= hard else { throw PropellerError(.invalidArgument, "invalid ulimit \"\(text)\": soft limit above hard limit") }
            self.init(resource: resource, soft: soft, hard: hard)
        }

        /// 1024 open files, soft and hard, unless the task asks otherwise.
        public static let defaultNofile = ResourceLimit(resource: 7, soft: 1024, hard: 1024)
    }

    /// A root filesystem assembled with overlayfs: read-only `lower` directories (top first)
    /// under a private writable upper layer, mounted on ``ContainerSpec/rootfs`` inside the
    /// container's mount namespace.
    public struct Overlay: Hashable, Sendable {
        /// Where the container's writes go.
        public enum Scratch: Hashable, Sendable {
            /// The directories `upper` and `work` (made when missing; the caller removes them).
            case directories
            /// A private tmpfs of at most `sizeBytes` (nil: half the RAM, the tmpfs default),
            /// attached nowhere and gone with the container's mount namespace, so nothing is
            /// left to remove even after a crash. Its pages are charged to the memory cgroup of
            /// the writer, the container: its memory limit bounds its writes too. A kernel that
            /// refuses an overlay on a detached mount gets the tmpfs mounted in a private mount
            /// namespace instead; one without the mount API (or with it refused) falls back to
            /// ``directories``; ``RunningContainer/scratchInMemory`` tells which.
            case memory(sizeBytes: UInt64?)
        }

        public var lower: [String]
        /// The upper layer and overlayfs's work directory on the host (with ``Scratch/memory``,
        /// used only by the fallback).
        public var upper: String
        public var work: String
        public var scratch: Scratch

        public init(lower: [String], upper: String, work: String, scratch: Scratch = .directories) {
            self.lower = lower
            self.upper = upper
            self.work = work
            self.scratch = scratch
        }

        /// The mount options, refusing paths overlayfs would misparse.
        func mountOptions() throws -> String {
            for p in lower + [upper, work] where p.contains(",") || p.contains(":") || !p.hasPrefix("/") {
                throw PropellerError(.invalidArgument, "overlay path \(p): must be absolute and contain no ',' or ':'")
            }
            // volatile: no sync of the upper layer at unmount; it is discarded with the run anyway.
            return "lowerdir=\(lower.joined(separator: ":")),upperdir=\(upper),workdir=\(work),volatile"
        }
    }

    /// A directory of the host (a volume) or a new tmpfs mounted into the container: always
    /// nosuid and nodev, private, its target resolved inside the container's root.
    public struct Mount: Hashable, Sendable {
        public enum Source: Hashable, Sendable {
            /// A host directory or file (only that mount: mounts below it stay out).
            case bind(String)
            /// A new tmpfs, mode 1777, of at most `sizeBytes` (nil: half the RAM, the tmpfs
            /// default); its pages are charged to the container's memory cgroup.
            case tmpfs(sizeBytes: UInt64?)
            /// A file of these bytes on a tmpfs of its own, owned by the container's user, mode
            /// 0400, read-only, never on a disk: a secret.
            case file([UInt8])
        }

        public var source: Source
        /// Absolute, inside the container; made when missing.
        public var target: String
        public var readOnly: Bool

        public init(_ source: Source, at target: String, readOnly: Bool = false) {
            self.source = source
            self.target = target
            self.readOnly = readOnly
        }
    }

    public var id: ContainerID
    /// Host path of the root filesystem (must exist); with ``overlay``, the empty directory the
    /// overlay is mounted on.
    public var rootfs: String
    public var overlay: Overlay?
    /// argv; `command[0]` is looked up in the container's PATH when it has no `/`.
    public var command: [String]
    /// `KEY=VALUE` entries added to (and overriding) the defaults PATH, HOSTNAME and HOME.
    public var environment: [String]
    public var workingDirectory: String
    /// `UID[:GID]` or `NAME[:GROUP]` resolved in the rootfs; nil is root.
    public var user: String?
    /// Defaults to the first 12 hex digits of the id.
    public var hostname: String?
    public var network: NetworkMode
    /// With ``NetworkMode/none``: join this network namespace (a descriptor the caller made with
    /// ``ContainerRuntime/makeNetworkNamespace()``, set up by CNI, and still owns) instead of a
    /// new one with loopback alone.
    public var networkNamespace: Int32?
    public var capabilities: CapabilitySet
    public var readOnlyRootfs: Bool
    public var seccomp: SeccompPolicy
    public var limits: CgroupLimits
    public var resourceLimits: [ResourceLimit]
    /// Descriptors for the container's stdin, stdout and stderr; -1 inherits the caller's.
    public var stdio: [Int32]
    /// Kill the container when the thread that started it dies (right for a CLI, wrong for a
    /// pool of worker threads).
    public var killWithParent: Bool
    /// Volumes and tmpfs mounts, in order (a later one may sit inside an earlier one); their
    /// targets are checked with ``MountTarget``.
    public var mounts: [Mount]
    /// Paths made unreadable (Docker's list).
    public var maskedPaths: [String]
    /// Paths mounted read-only (Docker's list).
    public var readonlyPaths: [String]

    public init(id: ContainerID = ContainerID(), rootfs: String, command: [String]) {
        self.id = id
        self.rootfs = rootfs
        self.overlay = nil
        self.command = command
        environment = []
        workingDirectory = "/"
        user = nil
        hostname = nil
        network = .none
        capabilities = .defaultSet
        readOnlyRootfs = false
        seccomp = .default
        limits = CgroupLimits()
        resourceLimits = [.defaultNofile]
        stdio = [-1, -1, -1]
        killWithParent = false
        mounts = []
        maskedPaths = Self.defaultMaskedPaths
        readonlyPaths = Self.defaultReadonlyPaths
    }

    public static let defaultMaskedPaths = [
        "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]

    public static let defaultReadonlyPaths = [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]

    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}
