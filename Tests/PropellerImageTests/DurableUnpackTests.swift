import Foundation
import PropellerCore
@testable import PropellerImage
import PropellerTestSupport
import Testing

/// An unpack counts as complete only with its marker, written durably with the files; what an
/// unpack cut short (a crash, a power cut) left is removed when a proplet starts, unless another
/// process is unpacking it now.
struct DurableUnpackTests {
    @Test func whatAnUnpackCutShortLeftIsRemovedAndNothingElse() throws {
        let (store, image, dir) = try StoredRunnableTests().store(config: nil)
        defer { dir.remove() }
        let images = store.imagesDirectory
        let complete = image.manifestDigest.hex
        #expect(FileManager.default.fileExists(atPath: images + "/" + complete + "/unpacked"), "a finished unpack has its marker")
        #expect(try String(contentsOfFile: images + "/" + complete + "/rootfs/etc/motd", encoding: .utf8) == "hi\n")

        func tree(_ path: String) throws {
            try FileManager.default.createDirectory(atPath: path + "/rootfs/bin", withIntermediateDirectories: true)
            try Data("half".utf8).write(to: URL(fileURLWithPath: path + "/rootfs/bin/sh"))
        }
        let hexA = String(repeating: "a", count: 64), hexB = String(repeating: "b", count: 64), hexC = String(repeating: "c", count: 64)
        try tree(images + "/.unpack-\(hexA)-4242")  // its process died
        try tree(images + "/" + hexB)  // renamed without its marker (written by an older version)
        try tree(images + "/.unpack-\(hexC)-\(getpid())")  // being unpacked now: its lock is held
        let lock = open(images + "/\(hexC).lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        try #require(lock >= 0 && flock(lock, LOCK_EX) == 0)
        defer { close(lock) }

        let removed = store.removeIncompleteUnpacks().sorted()
        #expect(removed == [".unpack-\(hexA)-4242", hexB].sorted())
        #expect(!FileManager.default.fileExists(atPath: images + "/.unpack-\(hexA)-4242"))
        #expect(!FileManager.default.fileExists(atPath: images + "/" + hexB))
        #expect(FileManager.default.fileExists(atPath: images + "/.unpack-\(hexC)-\(getpid())/rootfs/bin/sh"), "an unpack in progress was removed")
        #expect(FileManager.default.fileExists(atPath: images + "/" + complete + "/rootfs/etc/motd"), "a complete unpack was removed")
        #expect(try store.rootfs(for: image) == images + "/" + complete + "/rootfs")
    }
}
