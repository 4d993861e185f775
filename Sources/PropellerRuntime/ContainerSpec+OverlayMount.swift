#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import Logging
import PropellerCore

extension ContainerSpec.Overlay {
    /// An overlay mounted attached nowhere, for the container's child to move onto its rootfs.
    struct Detached {
        /// The mount's descriptor; closing it unmounts everything if the child never took it.
        let fd: Int32
        /// Whether the upper layer is a scratch tmpfs (``Scratch/memory``) rather than the
        /// `upper`/`work` directories.
        let inMemory: Bool
    }

    /// How a scratch tmpfs reaches overlayfs.
    enum ScratchMethod: CaseIterable, Sendable {
        /// Mounted detached and named through `/proc/self/fd` (kernels that accept a detached
        /// mount as a layer: 6.18 does).
        case detached
        /// Mounted on the rootfs mount point in a private mount namespace of a short-lived
        /// thread (older kernels, 6.1 included; costs a copy of the mount table).
        case privateNamespace
    }

    /// Mounts the overlay detached: on a scratch tmpfs with ``Scratch/memory`` where the kernel
    /// allows (trying `scratchMethods` in order; `mountPoint` is the rootfs directory, used by
    /// ``ScratchMethod/privateNamespace``), else on the `upper` and `work` directories (made
    /// when missing). Returns nil when the kernel has no mount API or it is refused (the child
    /// then mounts the overlay itself from ``mountOptions()``, the directories made).
    func mountDetached(on mountPoint: String, scratchMethods: [ScratchMethod], logger: Logger) throws -> Detached? {
        if case .memory(let size) = scratch {
            for method in scratchMethods {
                switch mountOnScratch(sizeBytes: size, method: method, mountPoint: mountPoint) {
                case .success(let fd): return Detached(fd: fd, inMemory: true)
                case .failure(let why):
                    logger.debug("scratch tmpfs refused", metadata: ["method": "\(method)", "upper": "\(upper)", "error": "\(why)"])
                }
            }
            logger.debug("no scratch tmpfs for the overlay: writing to directories", metadata: ["upper": "\(upper)"])
        }
        try makeDirectories()
        var what = [CChar](repeating: 0, count: 512)
        let fd = pl_overlay_mount(lower.joined(separator: ":"), upper, work, 1, &what, what.count)
        if fd >= 0 { return Detached(fd: fd, inMemory: false) }
        let err = errno
        let step = Self.failedStep(what)
        // No mount API in this kernel, or refused by a seccomp filter around this process.
        if err == ENOSYS || (err == EPERM && step.hasPrefix("fsopen")) { return nil }
        throw PropellerError(err == ENOENT ? .notFound : .systemCall,
                             "mount overlay of \(lower.joined(separator: ":")) (upper \(upper)): \(step): \(FileIO.errnoName(err))")
    }

    /// The overlay on a fresh scratch tmpfs, by `method`. On failure, the step and errno, for
    /// the caller to log before it tries the next method or the directories (which report the
    /// error if it is not the scratch's own).
    private func mountOnScratch(sizeBytes: UInt64?, method: ScratchMethod, mountPoint: String) -> Result<Int32, PropellerError> {
        var what = [CChar](repeating: 0, count: 512)
        func failure() -> Result<Int32, PropellerError> {
            let err = errno
            return .failure(PropellerError(.systemCall, "\(Self.failedStep(what)): \(FileIO.errnoName(err))"))
        }
        if method == .privateNamespace {
            let fd = pl_scratch_overlay_private(lower.joined(separator: ":"), sizeBytes ?? 0, lower.first ?? "/", mountPoint, &what, what.count)
            return fd >= 0 ? .success(fd) : failure()
        }
        let scratchFD = pl_scratch_mount(sizeBytes ?? 0, lower.first ?? "/", &what, what.count)
        guard scratchFD >= 0 else { return failure() }
        defer { close(scratchFD) }
        let root = "/proc/self/fd/\(scratchFD)"
        let fd = pl_overlay_mount(lower.joined(separator: ":"), root + "/upper", root + "/work", 0, &what, what.count)
        return fd >= 0 ? .success(fd) : failure()
    }

    /// The failed step (and the kernel's message) the C helpers leave in their `what` buffer.
    private static func failedStep(_ what: [CChar]) -> String {
        String(decoding: what.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Makes the upper and work directories when missing.
    func makeDirectories() throws {
        for dir in [upper, work] where mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw FileIO.systemError("create overlay directory", dir)
        }
    }
}
