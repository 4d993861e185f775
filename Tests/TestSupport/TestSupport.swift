import Foundation
import PropellerCore

/// Helpers shared by the test targets: privilege checks, temp directories, the fixture rootfs.

/// True when the tests run as root; privileged tests are skipped otherwise, with a message.
public let isRoot = getuid() == 0

/// The repository root, found from this file's path.
public let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A temp directory removed by `remove()`.
public struct TempDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "propeller-test") throws {
        path = NSTemporaryDirectory() + "/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The busybox + probe root filesystem from rootfs-fixtures/build-rootfs.sh, built once per
/// test process.
public enum Fixture {
    static let rootfs: Result<String, PropellerError> = {
        do {
            let dir = try TempDirectory("propeller-rootfs")
            let rootfs = dir.path + "/rootfs"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = [packageRoot + "/rootfs-fixtures/build-rootfs.sh", rootfs]
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else {
                throw PropellerError(.internalError, "build-rootfs.sh failed with status \(p.terminationStatus)")
            }
            atexit { Fixture.cleanup() }
            return .success(rootfs)
        } catch let error as PropellerError {
            return .failure(error)
        } catch {
            return .failure(PropellerError(.internalError, "cannot build the fixture rootfs: \(error)"))
        }
    }()

    public static func path() throws -> String { try rootfs.get() }

    public static func cleanup() {
        if case .success(let path) = rootfs {
            try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
        }
    }
}

public func readFile(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

public func mkdirs(_ path: String) { try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }

/// Writes `text` to `path` in place. (FileManager.createFile writes atomically through a
/// "TemporaryDirectory.*" in /tmp that Foundation on Linux leaves behind.)
public func writeFile(_ path: String, _ text: String) {
    try? Data(text.utf8).write(to: URL(fileURLWithPath: path))
}
