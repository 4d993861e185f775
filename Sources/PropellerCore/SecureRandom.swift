#if canImport(Glibc)
import Glibc
#endif

/// Bytes from the kernel's CSPRNG (/dev/urandom), for secrets and tokens.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        // Without the kernel's generator there is no safe secret to hand out.
        guard fd >= 0 else { fatalError("cannot open /dev/urandom: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var filled = 0
        while filled < count {
            let n = out.withUnsafeMutableBytes { buffer in buffer.baseAddress.map { read(fd, $0 + filled, count - filled) } ?? 0 }
            if n > 0 { filled += n } else if n == 0 || errno != EINTR {
                fatalError("cannot read /dev/urandom: \(String(cString: strerror(errno)))")
            }
        }
        return out
    }
    /// A secret for people to paste: URL-safe characters only (`A-Za-z0-9-_`), 6 bits each.
    public static func token(characters: Int = 43) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        return String(decoding: bytes(characters).map { alphabet[Int($0 & 63)] }, as: UTF8.self)
    }
}
