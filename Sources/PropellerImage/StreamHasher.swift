#if canImport(Glibc)
import Glibc
#endif
import CCrypto
import PropellerCore

/// SHA-256 through OpenSSL's libcrypto (assembly with SHA extensions or AVX2), for the bulk paths:
/// blobs as they stream in and layers as they unpack. Produces the same digests as
/// `PropellerCore.SHA256`, which stays the dependency-free reference.
final class StreamHasher {
    private let context: OpaquePointer?
    private var fallback: SHA256?

    init() {
        let ctx = EVP_MD_CTX_new()
        if let ctx, EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 {
            context = ctx
        } else {
            if let ctx { EVP_MD_CTX_free(ctx) }
            context = nil
            fallback = SHA256()
        }
    }

    deinit { if let context { EVP_MD_CTX_free(context) } }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let context else {
            fallback?.update(bytes)
            return
        }
        _ = EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
    }

    func finalize() -> [UInt8] {
        guard let context else { return fallback?.finalize() ?? [] }
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = EVP_DigestFinal_ex(context, &out, &length)
        return out
    }
}

/// SHA-256 of bytes in memory (libcrypto), for chunk checks.
public enum Checksum {
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        let h = StreamHasher()
        h.update(bytes)
        return h.finalize()
    }

    public static func sha256(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    /// The SHA-256 of a whole file, read in 1 MiB pieces.
    public static func sha256(file path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PropellerError(.notFound, "open \(path): errno \(errno)") }
        defer { close(fd) }
        let h = StreamHasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw PropellerError(.systemCall, "read \(path): errno \(errno)") }
            if n == 0 { break }
            buffer.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return h.finalize()
    }
}

/// SHA-256 fed piece by piece, for callers outside this module (a blob assembled from chunks).
public final class BlobHasher: @unchecked Sendable {
    private let hasher = StreamHasher()
    public init() {}
    public func update(_ bytes: ArraySlice<UInt8>) { bytes.withUnsafeBytes { hasher.update($0) } }
    public func finalize() -> Digest { Digest(sha256: hasher.finalize()) }
}
