#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// One run's private directories under `<data>/runs/<id>`: the overlay's `upper` and `work`
/// and the `merged` mount point (or, without overlayfs, a full copy of the image's rootfs).
public struct RunDirectory: Sendable {
    public let path: String
    public var upper: String { path + "/upper" }
    public var work: String { path + "/work" }
    public var merged: String { path + "/merged" }

    public static func create(dataDirectory: String, id: ContainerID) throws -> RunDirectory {
        let runs = dataDirectory + "/runs"
        if mkdir(runs, 0o700) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "create \(runs): \(errnoName(errno))")
        }
        let dir = RunDirectory(path: runs + "/" + id.hex)
        for d in [dir.path, dir.upper, dir.work, dir.merged] where mkdir(d, 0o755) != 0 {
            let err = errno
            dir.remove()
            throw PropellerError(.systemCall, "create \(d): \(errnoName(err))")
        }
        return dir
    }

    /// Removes everything the run wrote.
    public func remove() { removeTree(path) }

    /// Whether this kernel offers overlayfs (else a run copies the image's rootfs).
    public static var overlayAvailable: Bool {
        guard let f = fopen("/proc/filesystems", "r") else { return false }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, 256, f) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasSuffix("\toverlay\n") { return true }
        }
        return false
    }
}

extension ImageConfiguration {
    /// argv for a run: Entrypoint + the user's arguments, or Entrypoint + Cmd when there are none.
    public func command(arguments: [String]) throws -> [String] {
        let argv = (config?.Entrypoint ?? []) + (arguments.isEmpty ? (config?.Cmd ?? []) : arguments)
        guard !argv.isEmpty else {
            throw PropellerError(.invalidArgument, "the image has no Entrypoint or Cmd; give a command")
        }
        return argv
    }

    /// The image's environment (the user's entries are appended after, and win).
    public var environment: [String] { config?.Env ?? [] }
    public var workingDirectory: String? { config?.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } }
    public var user: String? { config?.User.flatMap { $0.isEmpty ? nil : $0 } }
}
