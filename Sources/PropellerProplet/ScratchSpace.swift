#if canImport(Glibc)
import Glibc
#endif
import CFileSystem
import Logging
import PropellerCore
import PropellerImage

/// A tmpfs under the data directory for the run directories of actor executions.
///
/// An execution creates and removes a dozen inodes (run, upper, work and merged directories,
/// overlayfs's own work files, the message and results files, the crash journal); at hundreds of
/// executions a second, ext4's inode allocator (which scans past recently deleted inodes) took a
/// third of the proplet's CPU. On tmpfs those are memory operations, and what an execution writes
/// into its rootfs is charged to its own memory cgroup. The mount outlives a crash of the proplet
/// (so does the journal in it, for the successor's clean-up) and is reused by the next start.
struct ScratchSpace: Sendable {
    let path: String
    var runs: String { path }
    var journal: String { path + "/containers" }

    static let tmpfsMagic = 0x0102_1994

    /// Mounts (or adopts a predecessor's) tmpfs at `path`; nil when the kernel refuses.
    static func prepare(at path: String, sizeBytes: UInt64, logger: Logger) -> ScratchSpace? {
        guard sizeBytes > 0 else { return nil }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            logger.warning("no scratch tmpfs: actor executions run from the data directory", metadata: ["path": "\(path)", "error": "\(errnoName(errno))"])
            return nil
        }
        if pf_filesystem_type(path) == tmpfsMagic {
            logger.info("adopted the scratch tmpfs of a previous run", metadata: ["path": "\(path)"])
        } else if mount("tmpfs", path, "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0700,size=\(sizeBytes)") != 0 {
            logger.warning("no scratch tmpfs: actor executions run from the data directory", metadata: ["path": "\(path)", "error": "\(errnoName(errno))"])
            return nil
        }
        let scratch = ScratchSpace(path: path)
        _ = mkdir(scratch.journal, 0o700)
        return scratch
    }

    /// Unmounts it (lazily: a container still being torn down keeps its view until it is gone).
    func unmount() {
        _ = umount2(path, Int32(MNT_DETACH))
        _ = rmdir(path)
    }
}
