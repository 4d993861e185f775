#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore

extension ContainerSpec.Overlay {
    /// Makes the upper and work directories (when missing) and mounts the overlay detached,
    /// attached nowhere until the container's child moves it onto its rootfs. Returns the
    /// mount's descriptor, or nil when the kernel has no mount API or it is refused (the child
    /// then mounts the overlay itself from ``mountOptions()``).
    ///
    /// A detached mount lives as long as its descriptor: if the container never starts, closing
    /// it unmounts everything.
    func mountDetached() throws -> Int32? {
        try makeDirectories()
        var what = [CChar](repeating: 0, count: 512)
        let fd = pl_overlay_mount(lower.joined(separator: ":"), upper, work, &what, what.count)
        if fd >= 0 { return fd }
        let err = errno
        let step = String(decoding: what.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // No mount API in this kernel, or refused by a seccomp filter around this process.
        if err == ENOSYS || (err == EPERM && step.hasPrefix("fsopen")) { return nil }
        throw PropellerError(err == ENOENT ? .notFound : .systemCall,
                             "mount overlay of \(lower.joined(separator: ":")) (upper \(upper)): \(step): \(FileIO.errnoName(err))")
    }

    /// Makes the upper and work directories when missing.
    func makeDirectories() throws {
        for dir in [upper, work] where mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw FileIO.systemError("create overlay directory", dir)
        }
    }
}
