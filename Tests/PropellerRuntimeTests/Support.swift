import Foundation
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// A cgroupfs imitation in a temp directory: `mkdir` creates the interface files the kernel
/// would create for that hierarchy. A named fake, for driver unit tests only; the real kernel
/// is exercised by the privileged tests.
struct SimulatedCgroupFilesystem: CgroupFilesystem {
    /// Files created in every new directory, keyed by a prefix of the path (the hierarchy root).
    let interfaceFiles: [String: [String: String]]
    let kernel = KernelCgroupFilesystem()

    func makeDirectory(_ path: String) throws {
        try kernel.makeDirectory(path)
        for (root, files) in interfaceFiles where path.hasPrefix(root) {
            for (name, content) in files {
                writeFile(path + "/" + name, content)
            }
        }
    }

    func removeDirectory(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw PropellerError(.notFound, "no \(path)") }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDir), isDir.boolValue {
                throw PropellerError(.systemCall, "remove cgroup \(path): EBUSY")
            }
            try FileManager.default.removeItem(atPath: path + "/" + name)
        }
        try kernel.removeDirectory(path)
    }

    func read(_ path: String) throws -> String { try kernel.read(path) }
    /// cgroupfs files take each write as a whole new value; regular files need a truncate.
    func write(_ path: String, _ value: String) throws {
        guard truncate(path, 0) == 0 else { throw PropellerError(.notFound, "open \(path): ENOENT") }
        try kernel.write(path, value)
    }
    func exists(_ path: String) -> Bool { kernel.exists(path) }
}

