import CLauncher

/// Turns signals into bytes on a pipe, so a supervisor can wait for "the container exited" and
/// "the user pressed Ctrl-C" in one poll. Installs process-wide handlers: for a CLI, not a daemon
/// that handles signals itself.
public enum SignalPipe {
    /// Installs handlers for `signals` and returns the pipe's non-blocking read end, or -1.
    public static func install(_ signals: [Int32]) -> Int32 {
        signals.withUnsafeBufferPointer { pl_signal_pipe($0.baseAddress, $0.count) }
    }
}
