import CCrypto
import PropellerCore

/// mosquitto 2's password file entries: `user:$7$ITERATIONS$SALT$HASH`, PBKDF2-HMAC-SHA512 with a
/// 12-byte salt and a 64-byte key, both base64 (what `mosquitto_passwd` writes).
public enum MosquittoPassword {
    public static let iterations = 101

    /// The password file line for `username`.
    public static func entry(username: String, password: String, salt: [UInt8] = SecureRandom.bytes(12)) throws -> String {
        "\(username):" + (try hash(password: password, salt: salt, iterations: iterations))
    }

    public static func hash(password: String, salt: [UInt8], iterations: Int) throws -> String {
        var key = [UInt8](repeating: 0, count: 64)
        let pw = Array(password.utf8)
        let ok = pw.withUnsafeBufferPointer { p in
            salt.withUnsafeBufferPointer { s in
                p.withMemoryRebound(to: CChar.self) { pc in
                    PKCS5_PBKDF2_HMAC(pc.baseAddress, Int32(pc.count), s.baseAddress, Int32(s.count), Int32(iterations), EVP_sha512(), Int32(key.count), &key)
                }
            }
        }
        guard ok == 1 else { throw PropellerError(.internalError, "PBKDF2 failed") }
        return "$7$\(iterations)$\(base64(salt))$\(base64(key))"
    }

    /// Whether `password` matches a `$7$` hash.
    public static func verify(password: String, hash: String) -> Bool {
        let parts = hash.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[1] == "7", let n = Int(parts[2]), let salt = decodeBase64(String(parts[3])) else { return false }
        return (try? self.hash(password: password, salt: salt, iterations: n)) == hash
    }

    static func base64(_ bytes: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: (bytes.count + 2) / 3 * 4 + 1)
        let n = bytes.withUnsafeBufferPointer { EVP_EncodeBlock(&out, $0.baseAddress, Int32($0.count)) }
        return String(decoding: out.prefix(Int(n)), as: UTF8.self)
    }

    static func decodeBase64(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard !input.isEmpty, input.count % 4 == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: input.count / 4 * 3)
        let n = input.withUnsafeBufferPointer { EVP_DecodeBlock(&out, $0.baseAddress, Int32($0.count)) }
        guard n >= 0 else { return nil }
        let padding = input.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        return Array(out.prefix(Int(n) - padding))
    }
}
