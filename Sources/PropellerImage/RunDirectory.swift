#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// One run's private directories under `<data>/runs`: `<id>`, the overlay's upper layer (what
/// the container writes), and `<id>.work`, its work directory; or, without overlayfs, `<id>`
/// holding a full copy of the image's rootfs.
///
/// An overlay is mounted inside the container's own mount namespace, so every run uses the
/// same mount point, `<data>/runs/.rootfs`, created once. Directory operations cost a journal
/// update each on ext4 (0.1–0.3 ms here), so a run makes as few as it can: two to prepare, and
/// three to remove after a run that wrote nothing.
public struct RunDirectory: Sendable {
    /// The upper layer (overlay) or the copied rootfs.
    public let path: String
    /// The directory the container's root is mounted on (overlay) or copied into (no overlay).
    public let merged: String
    /// Whether the run is an overlay of the image's rootfs (else a copy of it in `merged`).
    public let overlay: Bool
    public var upper: String { path }
    public var work: String { path + ".work" }

    /// The directories of run `id` under `dataDirectory` (nothing is created).
    public init(dataDirectory: String, id: ContainerID, overlay: Bool) {
        let runs = dataDirectory + "/runs"
        path = runs + "/" + id.hex
        merged = overlay ? runs + "/.rootfs" : path
        self.overlay = overlay
    }

    /// Creates the run's directories: `<id>` and `<id>.work` for an overlay, else `<id>`.
    ///
    /// - Parameter layers: false leaves an overlay's `<id>` and `<id>.work` to
    ///   `ContainerRuntime.start`, which makes them while it prepares the rest of the container
    ///   (only the shared directories are made here). Pass true to write into the upper layer
    ///   before the container starts.
    public static func create(dataDirectory: String, id: ContainerID, overlay: Bool = overlayAvailable, layers: Bool = true) throws -> RunDirectory {
        let dir = RunDirectory(dataDirectory: dataDirectory, id: id, overlay: overlay)
        let runs = dataDirectory + "/runs"
        for (shared, mode) in [(runs, mode_t(0o700))] + (overlay ? [(dir.merged, mode_t(0o755))] : []) where mkdir(shared, mode) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "create \(shared): \(errnoName(errno))")
        }
        for d in overlay ? (layers ? [dir.upper, dir.work] : []) : [dir.path] where mkdir(d, 0o755) != 0 {
            let err = errno
            dir.remove()
            throw PropellerError(.systemCall, "create \(d): \(errnoName(err))")
        }
        return dir
    }

    /// Removes overlayfs's `volatile` marker (`work/work/incompat/volatile/dirty`, made at mount
    /// time so that a crashed volatile upper layer is not mounted again). A run's layers are
    /// never mounted again, so the marker has no use. `ContainerRuntime` removes it right after
    /// mounting with the mount API; this covers overlays the child mounted with mount(2) and runs
    /// left by a crash. Harmless when there is none.
    public func dropVolatileMarker() {
        guard overlay else { return }
        unlink(work + "/work/incompat/volatile/dirty")
        rmdir(work + "/work/incompat/volatile")
        rmdir(work + "/work/incompat")
    }

    /// Removes everything the run wrote: the known directories by name first (no listings),
    /// then, when something is left in them, whole trees.
    public func remove() {
        dropVolatileMarker()
        for dir in (overlay ? [work + "/work", work, upper] : [path]) + [artifacts, network] where rmdir(dir) != 0 && errno != ENOENT {
            removeTree(dir)
        }
    }

    /// The run's artifacts (fetched before it starts) and its network files (resolv.conf,
    /// hosts), beside it and removed with it.
    public var artifacts: String { path + ".artifacts" }
    public var network: String { path + ".net" }

    /// Whether this kernel offers overlayfs (else a run copies the image's rootfs). On a fresh
    /// host the module may simply not be loaded yet: the first time it is missing, `modprobe
    /// overlay` is tried (once per process) before a run settles for a copy.
    public static var overlayAvailable: Bool {
        if overlayListed() { return true }
        _ = overlayModuleLoad
        return overlayListed()
    }

    /// The exit status of one `modprobe -q overlay` (run at most once per process).
    private static let overlayModuleLoad: Int32 = spawnAndWait(["modprobe", "-q", "overlay"])

    /// Copies the image's rootfs `lower` into this run's directory (the fallback without
    /// overlayfs): `cp -a` without a shell, so no path is ever parsed as a command.
    public func copyRootfs(from lower: String) throws {
        let status = Self.spawnAndWait(["cp", "-a", "--", lower + "/.", merged + "/"])
        guard status == 0 else { throw PropellerError(.systemCall, "copy \(lower) into the run directory \(merged): cp exited with \(status)") }
    }

    /// Runs `argv` (looked up in PATH, then the usual bin and sbin directories) and returns its exit status, or
    /// -1 when it could not start.
    static func spawnAndWait(_ argv: [String]) -> Int32 {
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        var rc: Int32 = ENOENT
        for dir in ["", "/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"] where rc != 0 {
            let path = dir + argv[0]
            rc = dir.isEmpty ? posix_spawnp(&pid, path, nil, nil, &cArgs, environ) : posix_spawn(&pid, path, nil, nil, &cArgs, environ)
        }
        guard rc == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    private static func overlayListed() -> Bool {
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

extension ImageConfiguration.Config {
    /// argv for a run: Entrypoint + the user's arguments, or Entrypoint + Cmd when there are none.
    public func command(arguments: [String]) throws -> [String] {
        let argv = (Entrypoint ?? []) + (arguments.isEmpty ? (Cmd ?? []) : arguments)
        guard !argv.isEmpty else {
            throw PropellerError(.invalidArgument, "the image has no Entrypoint or Cmd; give a command")
        }
        return argv
    }

    /// The image's environment (the user's entries are appended after, and win).
    public var environment: [String] { Env ?? [] }
    public var workingDirectory: String? { WorkingDir.flatMap { $0.isEmpty ? nil : $0 } }
    public var user: String? { User.flatMap { $0.isEmpty ? nil : $0 } }
}

extension ImageConfiguration {
    /// What a run takes from the image (an image without a `config` section sets nothing).
    public var runDefaults: Config { config ?? Config() }
    public func command(arguments: [String]) throws -> [String] { try runDefaults.command(arguments: arguments) }
    public var environment: [String] { runDefaults.environment }
    public var workingDirectory: String? { runDefaults.workingDirectory }
    public var user: String? { runDefaults.user }
}
