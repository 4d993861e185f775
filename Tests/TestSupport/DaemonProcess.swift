import Foundation
import PropellerCore

/// A long-running child process (a manager, a proplet) with its output in a log file, stopped
/// politely (SIGTERM) or killed (SIGKILL) by PID.
public final class DaemonProcess: @unchecked Sendable {
    public let process: Process
    public let logPath: String
    public var pid: pid_t { process.processIdentifier }

    public init(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:], logPath: String) throws {
        self.logPath = logPath
        FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw PropellerError(.internalError, "cannot open \(logPath)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in extra { environment[k] = v }
        p.environment = environment
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = log
        p.standardError = log
        try p.run()
        try? log.close()
        process = p
    }

    public var isRunning: Bool { !hasExited(pid) }

    /// SIGTERM and wait (SIGKILL after `grace`).
    public func stop(grace: Duration = .seconds(20)) {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if isRunning { kill(pid, SIGKILL) }
        while isRunning { usleep(10_000) }
    }

    /// SIGKILL, as a crash would end it.
    public func crash() {
        kill(pid, SIGKILL)
        while isRunning { usleep(5_000) }
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit { stop(grace: .seconds(5)) }
}
