#if canImport(Glibc)
import Glibc
#endif
import CCrypto
import Foundation
import PropellerCore

/// Seals and opens secret values with AES-256-GCM under the manager's key (`--secrets-key-file`):
/// the store holds only what this makes. A sealed value is `1 ‖ key id (4) ‖ nonce (12) ‖
/// ciphertext ‖ tag (16)`, with the secret's name as associated data, so a value moved to another
/// name's row does not open, and a value sealed under another key says so.
public struct SecretBox: Sendable {
    static let version: UInt8 = 1
    let key: [UInt8]
    /// The first four bytes of the key's SHA-256: which key sealed a value.
    let keyID: [UInt8]

    public init(key: [UInt8]) throws {
        guard key.count == 32 else { throw PropellerError(.invalidArgument, "a secrets key is 32 bytes, not \(key.count)") }
        self.key = key
        keyID = Array(SHA256.hash(key).prefix(4))
    }

    /// The key in `path`: 32 bytes, or 64 hex digits. With `create`, a missing file is made
    /// with a new random key (0600). A key readable by others than its owner is refused.
    public init(keyFile path: String, create: Bool) throws {
        var st = stat()
        if stat(path, &st) != 0 {
            guard errno == ENOENT, create else {
                throw PropellerError(.notFound, "secrets key file \(path): \(errno == ENOENT ? "missing (make one with: head -c 32 /dev/urandom > \(path); chmod 600 \(path))" : String(cString: strerror(errno)))")
            }
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw PropellerError(.systemCall, "create secrets key file \(path): \(String(cString: strerror(errno)))") }
            let fresh = SecureRandom.bytes(32)
            let wrote = fresh.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd) == 0
            close(fd)
            guard wrote == 32, synced else { throw PropellerError(.systemCall, "write secrets key file \(path)") }
            try self.init(key: fresh)
            return
        }
        guard st.st_mode & 0o077 == 0 else {
            throw PropellerError(.permissionDenied, "secrets key file \(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw PropellerError(.systemCall, "read secrets key file \(path)") }
        var bytes = [UInt8](data)
        if bytes.count != 32 {
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.count == 64, let decoded = Self.hex(text) else {
                throw PropellerError(.invalidArgument, "secrets key file \(path): expected 32 bytes or 64 hex digits")
            }
            bytes = decoded
        }
        try self.init(key: bytes)
    }

    /// `value` sealed for the secret `name`.
    public func seal(_ value: [UInt8], name: String) throws -> [UInt8] {
        let nonce = SecureRandom.bytes(12)
        var out = [Self.version] + keyID + nonce
        out += try crypt(encrypt: true, value, nonce: nonce, name: name, tag: nil)
        return out
    }

    /// The value of `name` from what ``seal(_:name:)`` made, or an error saying why not.
    public func open(_ sealed: [UInt8], name: String) throws -> [UInt8] {
        guard sealed.count >= 1 + 4 + 12 + 16, sealed[0] == Self.version else { throw PropellerError(.invalidArgument, "secret \(name): not a sealed value") }
        guard Array(sealed[1..<5]) == keyID else {
            throw PropellerError(.permissionDenied, "secret \(name) was sealed under another key than this manager's (--secrets-key-file)")
        }
        let nonce = Array(sealed[5..<17])
        let body = Array(sealed[17..<(sealed.count - 16)])
        let tag = Array(sealed.suffix(16))
        return try crypt(encrypt: false, body, nonce: nonce, name: name, tag: tag)
    }

    /// AES-256-GCM over `input`; when encrypting, the tag is appended to the output.
    private func crypt(encrypt: Bool, _ input: [UInt8], nonce: [UInt8], name: String, tag: [UInt8]?) throws -> [UInt8] {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw PropellerError(.internalError, "secret \(name): no cipher context") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let aad = Array(name.utf8)
        var out = [UInt8](repeating: 0, count: input.count + 16)
        var length: Int32 = 0
        var total = 0
        let ok: Bool = key.withUnsafeBufferPointer { k in
            nonce.withUnsafeBufferPointer { n in
                let initOK = encrypt ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress, n.baseAddress) == 1
                                     : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress, n.baseAddress) == 1
                guard initOK else { return false }
                let aadOK = aad.withUnsafeBufferPointer { a in
                    encrypt ? EVP_EncryptUpdate(ctx, nil, &length, a.baseAddress, Int32(a.count)) == 1
                            : EVP_DecryptUpdate(ctx, nil, &length, a.baseAddress, Int32(a.count)) == 1
                }
                guard aadOK else { return false }
                let updateOK = input.withUnsafeBufferPointer { i in
                    out.withUnsafeMutableBufferPointer { o in
                        encrypt ? EVP_EncryptUpdate(ctx, o.baseAddress, &length, i.baseAddress, Int32(i.count)) == 1
                                : EVP_DecryptUpdate(ctx, o.baseAddress, &length, i.baseAddress, Int32(i.count)) == 1
                    }
                }
                guard updateOK else { return false }
                total = Int(length)
                if encrypt {
                    let finalOK = out.withUnsafeMutableBufferPointer { o in EVP_EncryptFinal_ex(ctx, o.baseAddress! + total, &length) == 1 }
                    guard finalOK else { return false }
                    total += Int(length)
                    var t = [UInt8](repeating: 0, count: 16)
                    guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, &t) == 1 else { return false }
                    out.replaceSubrange(total..<(total + 16), with: t)
                    total += 16
                    return true
                }
                var t = tag ?? []
                guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, &t) == 1 else { return false }
                return out.withUnsafeMutableBufferPointer { o in EVP_DecryptFinal_ex(ctx, o.baseAddress! + total, &length) == 1 }
            }
        }
        guard ok else {
            throw PropellerError(.permissionDenied, encrypt ? "secret \(name): sealing failed" : "secret \(name): the sealed value does not open (altered, or stored under another name)")
        }
        return Array(out.prefix(total))
    }

    /// Bytes from hex digits, or nil.
    static func hex(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let hi = value(digits[i]), let lo = value(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }
}
