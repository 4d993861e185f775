import Foundation
import PropellerCore
@testable import PropellerProplet
import PropellerTestSupport
import Testing

/// The files the proplet writes into a run's rootfs when overlayfs is missing (a copy of the
/// image, symlinks and all).
@Suite("Execution files inside a hostile rootfs")
struct ExecutionFilesTests {
    /// An image that ships `/propeller -> HOST_DIR` (absolute, as `/etc/cron.d` would be): the
    /// files land inside the rootfs, where the container sees them, and nothing in the host's
    /// directory. Before, the proplet followed the link and wrote into the host as root.
    @Test func anImageSymlinkCannotRedirectTheProplet() throws {
        let host = try TempDirectory("propeller-host-target")
        defer { host.remove() }
        let root = try TempDirectory("propeller-run-root")
        defer { root.remove() }
        #expect(symlink(host.path, root.path + "/propeller") == 0)
        mkdirs(root.path + host.path)  // the same path inside the rootfs: where RESOLVE_IN_ROOT leads
        try ExecutionFiles.write(into: root.path, message: Data("hello".utf8), state: "{}")
        #expect(try FileManager.default.contentsOfDirectory(atPath: host.path).isEmpty)
        #expect(readFile(root.path + host.path + "/message") == "hello")
        #expect(ExecutionFiles.read(ExecutionFiles.message, in: root.path, limit: 100)?.0 == Data("hello".utf8))
    }

    /// A link to a directory that does not exist inside the rootfs fails the run with a clear
    /// error; nothing is created outside.
    @Test func aDanglingImageSymlinkIsAnErrorNotAWayOut() throws {
        let host = try TempDirectory("propeller-host-target")
        defer { host.remove() }
        let root = try TempDirectory("propeller-run-root")
        defer { root.remove() }
        #expect(symlink(host.path + "/sub", root.path + "/propeller") == 0)
        #expect(throws: PropellerError.self) { try ExecutionFiles.write(into: root.path, message: Data("x".utf8), state: nil) }
        #expect(!FileManager.default.fileExists(atPath: host.path + "/sub"))
    }
}
