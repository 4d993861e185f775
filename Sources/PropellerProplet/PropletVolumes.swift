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
                guard v.readOnly || !offer.readOnly else {
                    throw PropellerError(.permissionDenied, "host volume \(name) is offered read-only here: mount it with :ro")
                }
                var st = stat()
                guard stat(offer.path, &st) == 0 else {
                    throw PropellerError(.notFound, "host volume \(name) at \(offer.path): \(errnoName(errno))")
                }
                mounts.append(ContainerSpec.Mount(.bind(offer.path), at: target, readOnly: v.readOnly || offer.readOnly))
            } else {
                mounts.append(ContainerSpec.Mount(.bind(try named(name, owner: owner)), at: target, readOnly: v.readOnly))
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

    /// Removes the named volume `name`; an error when it does not exist.
    func remove(_ name: String) throws {
        let path = namedRoot + "/" + (try VolumeName.check(name, what: "volume"))
        var st = stat()
        guard host[name] == nil, lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw PropellerError(.notFound, "no named volume \(name) here") }
        try FileManager.default.removeItem(atPath: path)
    }

    /// `<data>/volumes/NAME`, made (0755, `owner`'s) when missing.
    func named(_ name: String, owner: ResolvedUser) throws -> String {
        if mkdir(namedRoot, 0o700) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "make the named volumes' directory \(namedRoot): \(errnoName(errno))")
        }
        let path = namedRoot + "/" + name
        if mkdir(path, 0o755) == 0 {
            guard chown(path, owner.uid, owner.gid) == 0 else { throw PropellerError(.systemCall, "chown named volume \(name) at \(path): \(errnoName(errno))") }
        } else if errno != EEXIST {
            throw PropellerError(.systemCall, "make named volume \(name) at \(path): \(errnoName(errno))")
        }
        var st = stat()
        // Only a directory of its own: never a symlink someone left in its place.
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw PropellerError(.internalError, "named volume \(name): \(path) is not a directory")
        }
        return path
    }
}
