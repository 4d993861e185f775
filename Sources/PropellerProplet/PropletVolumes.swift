#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage
import PropellerRuntime

/// The volumes a proplet gives its tasks: host volumes its operator offers by name
/// (`--host-volume NAME=/path[:ro]`) and named volumes it keeps under `<data>/volumes/NAME`,
/// made on first use and kept across tasks. No task names a host path itself.
public struct PropletVolumes: Sendable {
    public struct Offer: Sendable, Hashable {
        public var path: String
        public var readOnly: Bool

        public init(path: String, readOnly: Bool) {
            self.path = path
            self.readOnly = readOnly
        }
    }

    /// Host volumes by name.
    public let host: [String: Offer]
    /// Where named volumes live.
    public let namedRoot: String

    public init(host: [String: Offer] = [:], namedRoot: String) {
        self.host = host
        self.namedRoot = namedRoot
    }

    /// What the announcement tells the manager: names and modes, not paths.
    public var announced: [HostVolume] { host.keys.sorted().map { HostVolume(name: $0, readOnly: host[$0]?.readOnly ?? true) } }

    /// The container mounts for a start's volumes and tmpfs mounts, making named volumes that
    /// do not exist yet (owned by `owner`, the task's user, so a task that does not run as root
    /// can write to the volume it made). A host volume offered read-only refuses a task that
    /// writes to it.
    func mounts(volumes: [VolumeMount], tmpfs: [TmpfsMount], secrets: [SecretMount] = [], values: [SecretValue] = [],
                owner: ResolvedUser) throws -> [ContainerSpec.Mount] {
        try MountTarget.checkDistinct(volumes.map(\.target) + tmpfs.map(\.target) + secrets.map(\.target))
        var mounts: [ContainerSpec.Mount] = []
        for v in volumes {
            let name = try VolumeName.check(v.name, what: "volume")
            let target = try MountTarget.check(v.target, what: "volume \(name)")
            if let offer = host[name] {
                guard v.sizeBytes == nil else { throw PropellerError(.invalidArgument, "volume \(name) is a host volume here: a size limit is for named volumes") }
                guard v.readOnly || !offer.readOnly else {
                    throw PropellerError(.permissionDenied, "host volume \(name) is offered read-only here: mount it with :ro")
                }
                var st = stat()
                guard stat(offer.path, &st) == 0 else {
                    throw PropellerError(.notFound, "host volume \(name) at \(offer.path): \(errnoName(errno))")
                }
                mounts.append(ContainerSpec.Mount(.bind(offer.path), at: target, readOnly: v.readOnly || offer.readOnly))
            } else {
                mounts.append(ContainerSpec.Mount(.bind(try named(name, owner: owner, sizeBytes: v.sizeBytes)), at: target, readOnly: v.readOnly))
            }
        }
        for t in tmpfs {
            mounts.append(ContainerSpec.Mount(.tmpfs(sizeBytes: t.sizeBytes), at: try MountTarget.check(t.target, what: "tmpfs")))
        }
        for secret in secrets {
            guard let value = values.first(where: { $0.name == secret.name }) else {
                throw PropellerError(.notFound, "secret \(secret.name) did not come with the start (the manager's log says why: removed, or sealed under another key)")
            }
            mounts.append(ContainerSpec.Mount(.file([UInt8](value.value)), at: try MountTarget.check(secret.target, what: "secret \(secret.name)"), readOnly: true))
        }
        return mounts
    }

    /// The named volumes there are, with their sizes (files' bytes, symlinks not followed) and
    /// how many of `using` (the volume names of what runs now) name each.
    func named(using: [String]) -> [NamedVolumeInfo] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: namedRoot)) ?? []).filter { VolumeName.isValid($0) && host[$0] == nil }
        return names.sorted().map { name in
            var size: UInt64 = 0
            let walker = FileManager.default.enumerator(atPath: namedRoot + "/" + name)
            while let relative = walker?.nextObject() as? String {
                var st = stat()
                if lstat(namedRoot + "/" + name + "/" + relative, &st) == 0, st.st_mode & S_IFMT == S_IFREG { size += UInt64(st.st_size) }
            }
            return NamedVolumeInfo(name: name, sizeBytes: size, inUse: using.filter { $0 == name }.count)
        }
    }

    /// Removes the named volume `name` (a sized one: unmounted, its file system image deleted);
    /// an error when it does not exist.
    func remove(_ name: String) throws {
        let path = namedRoot + "/" + (try VolumeName.check(name, what: "volume"))
        var st = stat()
        guard host[name] == nil, lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw PropellerError(.notFound, "no named volume \(name) here") }
        if Self.isMountPoint(path) { _ = umount2(path, Int32(MNT_DETACH)) }
        unlink(imagePath(name))
        try FileManager.default.removeItem(atPath: path)
    }

    /// Where a sized named volume's file system image is.
    func imagePath(_ name: String) -> String { namedRoot + "/.sized/" + name + ".ext4" }

    /// Unmounts the sized named volumes (at shutdown: they are mounted again on first use).
    func unmountSized() {
        for file in (try? FileManager.default.contentsOfDirectory(atPath: namedRoot + "/.sized")) ?? [] where file.hasSuffix(".ext4") {
            let path = namedRoot + "/" + file.dropLast(5)
            if Self.isMountPoint(path) { _ = umount2(path, Int32(MNT_DETACH)) }
        }
    }

    /// Whether `path` (as the kernel spells it: resolved, no `//`) is a mount point.
    static func isMountPoint(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        let canonical = String(cString: resolved)
        free(resolved)
        return (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.split(separator: "\n").contains { line in
            line.split(separator: " ").dropFirst(4).first.map(String.init) == canonical
        } ?? false
    }

    /// `<data>/volumes/NAME`, made (0755, `owner`'s) when missing; with a size, a file system
    /// of that size of its own (ext4 in a sparse image, loop-mounted nodev and nosuid there),
    /// mounted again when the proplet restarted.
    func named(_ name: String, owner: ResolvedUser, sizeBytes: UInt64? = nil) throws -> String {
        if mkdir(namedRoot, 0o700) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "make the named volumes' directory \(namedRoot): \(errnoName(errno))")
        }
        let path = namedRoot + "/" + name
        let image = imagePath(name)
        var imageStat = stat()
        let sized = stat(image, &imageStat) == 0
        if mkdir(path, 0o755) == 0 {
            if let sizeBytes {
                try makeFileSystem(image, sizeBytes: sizeBytes, owner: owner, volume: name)
                try mountImage(image, at: path, volume: name)
                return path
            }
            guard chown(path, owner.uid, owner.gid) == 0 else { throw PropellerError(.systemCall, "chown named volume \(name) at \(path): \(errnoName(errno))") }
        } else if errno != EEXIST {
            throw PropellerError(.systemCall, "make named volume \(name) at \(path): \(errnoName(errno))")
        } else if let sizeBytes, !sized || UInt64(imageStat.st_size) != sizeBytes {
            throw PropellerError(.invalidArgument,
                                 "named volume \(name) exists \(sized ? "with a size of \(ByteSize(bytes: UInt64(imageStat.st_size)))" : "without a size limit"): remove it (propeller volume rm) to make it with \(ByteSize(bytes: sizeBytes))")
        }
        if sized && !Self.isMountPoint(path) { try mountImage(image, at: path, volume: name) }
        var st = stat()
        // Only a directory of its own: never a symlink someone left in its place.
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw PropellerError(.internalError, "named volume \(name): \(path) is not a directory")
        }
        return path
    }

    private func makeFileSystem(_ image: String, sizeBytes: UInt64, owner: ResolvedUser, volume: String) throws {
        if mkdir(namedRoot + "/.sized", 0o700) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "make \(namedRoot)/.sized: \(errnoName(errno))")
        }
        let fd = open(image, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0, ftruncate(fd, off_t(sizeBytes)) == 0 else {
            let error = errnoName(errno)
            if fd >= 0 { close(fd) }
            throw PropellerError(.systemCall, "make named volume \(volume)'s image \(image): \(error)")
        }
        close(fd)
        do {
            try Self.run("/sbin/mkfs.ext4", ["-q", "-F", "-m", "0", "-E", "root_owner=\(owner.uid):\(owner.gid)", image], what: "make named volume \(volume)'s file system")
        } catch {
            unlink(image)
            throw error
        }
    }

    private func mountImage(_ image: String, at path: String, volume: String) throws {
        try Self.run("/bin/mount", ["-o", "loop,nodev,nosuid", image, path], what: "mount named volume \(volume)")
    }

    static func run(_ tool: String, _ arguments: [String], what: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PropellerError(.systemCall, "\(what): \(tool) exited \(process.terminationStatus): \(String(decoding: text.prefix(300), as: UTF8.self))")
        }
    }
}
