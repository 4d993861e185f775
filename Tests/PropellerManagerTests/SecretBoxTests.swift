import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

@Suite("Secret sealing")
struct SecretBoxTests {
    let box: SecretBox

    init() throws {
        box = try SecretBox(key: SecureRandom.bytes(32))
    }

    @Test func aValueOpensUnderItsNameAndKeyOnly() throws {
        let value = Array("hunter2\n".utf8) + [0, 255]
        let sealed = try box.seal(value, name: "db")
        #expect(try box.open(sealed, name: "db") == value)
        #expect(try box.seal(value, name: "db") != sealed, "a fresh nonce each time")
        #expect(throws: PropellerError.self, "moved to another name") { try box.open(sealed, name: "other") }
        #expect(throws: PropellerError.self, "another key") { try SecretBox(key: SecureRandom.bytes(32)).open(sealed, name: "db") }
        for i in [0, 5, 17, sealed.count - 1] {
            var altered = sealed
            altered[i] ^= 0x01
            #expect(throws: PropellerError.self, "byte \(i) altered") { try box.open(altered, name: "db") }
        }
        #expect(throws: PropellerError.self) { try box.open(Array(sealed.prefix(20)), name: "db") }
    }

    @Test func theKeyFileIsMadeOnceAndMustBePrivate() throws {
        let dir = try TempDirectory("propeller-secrets")
        defer { dir.remove() }
        let path = dir.path + "/key"
        #expect(throws: PropellerError.self, "missing and not to be made") { try SecretBox(keyFile: path, create: false) }
        let made = try SecretBox(keyFile: path, create: true)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600 && st.st_size == 32)
        let again = try SecretBox(keyFile: path, create: true)
        #expect(try again.open(try made.seal([1, 2, 3], name: "x"), name: "x") == [1, 2, 3], "the same key on the next start")
        chmod(path, 0o644)
        #expect(throws: PropellerError.self, "readable by others") { try SecretBox(keyFile: path, create: false) }
        writeFile(dir.path + "/hex", String(repeating: "ab", count: 32) + "\n")
        chmod(dir.path + "/hex", 0o600)
        #expect(try SecretBox(keyFile: dir.path + "/hex", create: false).key == Array(repeating: 0xab, count: 32))
        writeFile(dir.path + "/short", "abc")
        chmod(dir.path + "/short", 0o600)
        #expect(throws: PropellerError.self) { try SecretBox(keyFile: dir.path + "/short", create: false) }
    }
}
