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
