#if canImport(Glibc)
import Glibc
#endif
import CSeccomp
import PropellerCore

/// Compiled seccomp programs kept on disk (`/run/propeller/seccomp` by default, a tmpfs), so a
/// one-shot `propeller run` loads ~3 KB instead of compiling ~400 rules with libseccomp.
///
/// A cached program is only as trustworthy as the directory: the cache is used only when the
/// directory and file belong to root and are writable by no one else, and each file carries the
/// full description it was compiled from, which must match exactly (the file name is only a hash,
/// so a collision cannot substitute another filter).
public struct SeccompCache: Sendable {
    public let directory: String
    public static let defaultDirectory = "/run/propeller/seccomp"
    private static let magic = Array("propeller-seccomp-bpf 1\n".utf8)

    public init(directory: String = Self.defaultDirectory) {
        self.directory = directory
    }

    /// The exact text a program is compiled from: the profile, the capability set, the
    /// libseccomp version and the architecture.
    static func key(profile: SeccompProfile, capabilities: CapabilitySet) -> [UInt8] {
        var version = "unknown"
        if let v = seccomp_version() { version = "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)" }
        var uts = utsname()
        uname(&uts)
        let machine = withUnsafeBytes(of: uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var text = "caps=\(capabilities) libseccomp=\(version) arch=\(machine)\n"
        text += profile.canonicalText
        return Array(text.utf8)
    }

    /// FNV-1a, 64 bits, as the file name.
    static func fileName(for key: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key {
            hash ^= UInt64(b)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + ".bpf"
    }

    /// The cached program for `profile` and `capabilities`, compiling and storing it on a miss.
    public func program(profile: SeccompProfile, capabilities: CapabilitySet) throws -> SeccompProgram {
        let key = Self.key(profile: profile, capabilities: capabilities)
        let path = directory + "/" + Self.fileName(for: key)
        if let bytes = load(path: path, key: key), let program = try? SeccompProgram(bytes: bytes) {
            return program
        }
        let program = try SeccompProgram(profile: profile, capabilities: capabilities)
        store(path: path, key: key, program: program.bytes)
        return program
    }

    private func secure(_ st: stat, directory: Bool) -> Bool {
        let isType = (st.st_mode & S_IFMT) == (directory ? S_IFDIR : S_IFREG)
        return isType && st.st_uid == 0 && st.st_mode & 0o022 == 0
    }

    private func load(path: String, key: [UInt8]) -> [UInt8]? {
        var dirStat = stat()
        guard stat(directory, &dirStat) == 0, secure(dirStat, directory: true) else { return nil }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var fileStat = stat()
        guard fstat(fd, &fileStat) == 0, secure(fileStat, directory: false), fileStat.st_size < 1 << 20 else { return nil }
        guard let data = readExactly(fd: fd, count: Int(fileStat.st_size)) else { return nil }
        // magic, key length (8 decimal digits + newline), key, program
        let header = Self.magic.count + 9
        guard data.count > header, Array(data[0..<Self.magic.count]) == Self.magic,
              let keyLength = Int(String(decoding: data[Self.magic.count..<(Self.magic.count + 8)], as: UTF8.self)),
              data.count > header + keyLength,
              Array(data[header..<(header + keyLength)]) == key
        else { return nil }
        return Array(data[(header + keyLength)...])
    }

    private func store(path: String, key: [UInt8], program: [UInt8]) {
        // Best effort: a cache that cannot be written costs a compile, nothing else.
        if !FileIO.exists(directory) {
            var partial = ""
            for component in directory.split(separator: "/") {
                partial += "/" + component
                if !FileIO.exists(partial) { mkdir(partial, 0o700) }
            }
        }
        var dirStat = stat()
        guard stat(directory, &dirStat) == 0, secure(dirStat, directory: true) else { return }
        let length = String(key.count)
        let header = Self.magic + Array((String(repeating: "0", count: max(0, 8 - length.count)) + length + "\n").utf8)
        let contents = header + key + program
        let temp = path + ".tmp.\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written == contents.count && rename(temp, path) == 0 { return }
        unlink(temp)
    }
}
