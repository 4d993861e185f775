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
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
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

/// GET `path` from 127.0.0.1:`port` over plain HTTP/1.0; the body, or nil.
public func httpGet(port: Int, _ path: String) -> String? {
    guard let fd = connectLoopback(port: port) else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    return String(text[split.upperBound...])
}

/// The value of an unlabelled Prometheus counter in a /metrics page.
public func metric(_ name: String, in page: String?) -> UInt64? {
    page?.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { UInt64($0.split(separator: " ").last ?? "") }
}
