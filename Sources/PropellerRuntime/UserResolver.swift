#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore

/// The identity a container process runs as.
public struct ResolvedUser: Hashable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups (from the rootfs's /etc/group membership).
    public var additionalGroups: [UInt32]
    /// Home directory from /etc/passwd, or `/`.
    public var home: String

    public init(uid: UInt32, gid: UInt32, additionalGroups: [UInt32] = [], home: String = "/") {
        self.uid = uid
        self.gid = gid
        self.additionalGroups = additionalGroups
        self.home = home
    }

    public static let root = ResolvedUser(uid: 0, gid: 0, home: "/root")
}

/// Resolves `--user` values (`UID`, `UID:GID`, `NAME`, `NAME:GROUP`) against the rootfs's own
/// `/etc/passwd` and `/etc/group`, read with openat2(RESOLVE_IN_ROOT) so a symlink in the rootfs
/// cannot make Propeller read the host's files.
public struct UserResolver: Sendable {
    struct PasswdEntry { var name: String; var uid: UInt32; var gid: UInt32; var home: String }
    struct GroupEntry { var name: String; var gid: UInt32; var members: [String] }

    let passwd: [PasswdEntry]
    let groups: [GroupEntry]

    public init(rootfs: String) {
        let rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { if rootfd >= 0 { close(rootfd) } }
        func read(_ path: String) -> String {
            guard rootfd >= 0 else { return "" }
            let fd = pl_open_in_root(rootfd, path, O_RDONLY)
            guard fd >= 0 else { return "" }
            defer { close(fd) }
            return (try? FileIO.readAll(fd: fd, path: path)) ?? ""
        }
        self.init(passwd: read("/etc/passwd"), group: read("/etc/group"))
    }

    init(passwd: String, group: String) {
        self.passwd = passwd.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 7, let uid = UInt32(f[2]), let gid = UInt32(f[3]) else { return nil }
            return PasswdEntry(name: String(f[0]), uid: uid, gid: gid, home: String(f[5]))
        }
        self.groups = group.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 4, let gid = UInt32(f[2]) else { return nil }
            return GroupEntry(name: String(f[0]), gid: gid, members: f[3].split(separator: ",").map(String.init))
        }
    }

    /// Resolves `spec` (nil means root, Docker's default).
    public func resolve(_ spec: String?) throws -> ResolvedUser {
        guard let spec, !spec.isEmpty else {
            let rootEntry: PasswdEntry? = self.passwd.first(where: { $0.uid == 0 })
            let home: String = rootEntry?.home ?? "/root"
            return ResolvedUser(uid: 0, gid: 0, additionalGroups: supplementary(forUser: "root", primary: 0), home: home)
        }
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let userPart = parts[0]
        guard !userPart.isEmpty else { throw PropellerError(.invalidArgument, "invalid user \"\(spec)\": expected UID[:GID] or NAME[:GROUP]") }

        var uid: UInt32
        var gid: UInt32 = 0
        var home = "/"
        var name: String?
        if let number = UInt32(userPart) {
            uid = number
            if let entry = self.passwd.first(where: { $0.uid == number }) {
                gid = entry.gid
                home = entry.home
                name = entry.name
            }
        } else {
            guard isValidName(userPart) else { throw PropellerError(.invalidArgument, "invalid user name \"\(userPart)\"") }
            guard let entry = self.passwd.first(where: { $0.name == userPart }) else {
                throw PropellerError(.notFound, "user \"\(userPart)\" not found in the rootfs's /etc/passwd")
            }
            uid = entry.uid
            gid = entry.gid
            home = entry.home
            name = entry.name
        }
        var explicitGroup = false
        if parts.count == 2 {
            let groupPart = parts[1]
            explicitGroup = true
            if let number = UInt32(groupPart) {
                gid = number
            } else {
                guard isValidName(groupPart) else { throw PropellerError(.invalidArgument, "invalid group name \"\(groupPart)\"") }
                guard let entry = groups.first(where: { $0.name == groupPart }) else {
                    throw PropellerError(.notFound, "group \"\(groupPart)\" not found in the rootfs's /etc/group")
                }
                gid = entry.gid
            }
        }
        // An explicit group replaces the supplementary list, as in Docker.
        let extra = (explicitGroup || name == nil) ? [] : supplementary(forUser: name ?? "", primary: gid)
        return ResolvedUser(uid: uid, gid: gid, additionalGroups: extra, home: home.isEmpty ? "/" : home)
    }

    private func supplementary(forUser name: String, primary: UInt32) -> [UInt32] {
        var seen = Set<UInt32>()
        return groups.filter { $0.members.contains(name) && $0.gid != primary }.map(\.gid).filter { seen.insert($0).inserted }
    }

    private func isValidName(_ s: String) -> Bool {
        s.count <= 64 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-$".contains($0)) }
    }
}
