#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore

/// A container failed before its command started: which setup stage, on what, with which errno.
public struct LaunchError: Error, Sendable, CustomStringConvertible {
    /// The raw `pl_stage` value.
    public let stageCode: Int32
    /// The stage as words ("pivot_root into", "exec").
    public let stage: String
    public let errno: Int32
    /// The path or name the stage worked on.
    public let detail: String

    init(stageCode: Int32, errno: Int32, detail: String) {
        self.stageCode = stageCode
        self.stage = String(cString: pl_stage_name(stageCode))
        self.errno = errno
        self.detail = detail
    }

    /// The command itself could not be found or executed (as opposed to a runtime failure).
    public var isExecFailure: Bool { stageCode == Int32(PL_STAGE_EXEC.rawValue) }

    /// Exit status a CLI should use: 127 command not found, 126 cannot execute, 125 otherwise.
    public var exitStatus: Int32 {
        guard isExecFailure else { return 125 }
        return errno == ENOENT ? 127 : 126
    }

    public var description: String {
        let name = FileIO.errnoName(errno)
        if isExecFailure {
            let why = errno == ENOENT ? "not found in the container" : (errno == EACCES ? "permission denied" : String(cString: strerror(errno)))
            return "exec \(detail): \(name) (\(why))"
        }
        if stageCode == Int32(PL_STAGE_VOLUME.rawValue) && detail.hasPrefix("/") && (errno == ENOENT || errno == ELOOP) {
            // Resolved inside the container's root: a symlink of the image led nowhere there.
            return "\(stage) \(detail): \(name) (the path leads, through a symlink of the image, where the container has nothing)"
        }
        return detail.isEmpty ? "\(stage): \(name)" : "\(stage) \(detail): \(name)"
    }
}
