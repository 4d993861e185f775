import Foundation
import PropellerCore

/// A real mosquitto broker on a free loopback port (anonymous, no persistence), in a temp
/// directory. `restart()` stops it and starts it again on the same port.
public final class MosquittoServer: @unchecked Sendable {
    public let port: Int
    public let directory: TempDirectory
    private var process: Process?

    /// The broker's log (`log_type all`) when started with `settings`; empty otherwise.
    public var logPath: String { directory.path + "/mosquitto.log" }

    /// Anonymous and plain by default; `settings` replace that (a password file, an ACL) and
    /// turn on the full log in `logPath`; `listener` lines follow the listener line (TLS files).
    public init(port: Int? = nil, settings: [String]? = nil, listener: [String] = []) throws {
        directory = try TempDirectory("propeller-mosquitto")
        self.port = try port ?? freeLoopbackPort()
        let body = settings.map { lines in
            // Tests run as root: stay root so mosquitto can read the 0600 files the test made.
            (geteuid() == 0 ? ["user root"] : []) + lines + ["log_dest file \(directory.path)/mosquitto.log", "log_type all"]
        } ?? ["allow_anonymous true", "log_dest none"]
        writeFile(directory.path + "/mosquitto.conf", (["per_listener_settings false", "persistence false", "max_queued_messages 0", "set_tcp_nodelay true"]
                                                        + body + ["listener \(self.port) 127.0.0.1"] + listener).joined(separator: "\n") + "\n")
        try start()
    }

    public func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/mosquitto")
        p.arguments = ["-c", directory.path + "/mosquitto.conf"]
        p.standardOutput = FileHandle.nullDevice
        let errors = directory.path + "/stderr"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: errors) ?? FileHandle.nullDevice
        try p.run()
        process = p
        for _ in 0..<100 {
            if canConnect(port: port) { return }
            usleep(20_000)
        }
        stop()
        throw PropellerError(.internalError, "mosquitto did not start on port \(port): \(readFile(errors) ?? "")\(readFile(logPath) ?? "")")
    }

    public func stop() {
        if let p = process { stopProcess(p) }
        process = nil
    }

    /// SIGKILL, as a crash would end it (no goodbye to its clients); `start()` brings it back.
    public func crash() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        for _ in 0..<200 where !hasExited(p.processIdentifier) { usleep(10_000) }
        process = nil
    }

    public func restart() throws {
        stop()
        try start()
    }

    deinit {
        stop()
        directory.remove()
    }
}
