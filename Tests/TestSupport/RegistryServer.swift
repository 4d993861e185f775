import Foundation
import PropellerCore

/// A real `docker-registry` (distribution 2.8) on a free loopback port, with its storage in a
/// temp directory; optionally htpasswd-protected (Basic auth). Stopped by `stop()`.
public final class RegistryServer: @unchecked Sendable {
    public let port: Int
    public let directory: TempDirectory
    public var address: String { "127.0.0.1:\(port)" }
    public var storage: String { directory.path + "/data" }
    private let process: Process

    /// - Parameters:
    ///   - username/password: protect it with htpasswd (Basic auth).
    ///   - tokenAuth: an `auth:` section for the Bearer flow (see ``TokenServer``).
    public init(username: String? = nil, password: String? = nil, tokenAuth: String? = nil) throws {
        directory = try TempDirectory("propeller-registry")
        port = try freeLoopbackPort()
        var auth = ""
        if let username, let password {
            let htpasswd = directory.path + "/htpasswd"
            try run("/usr/bin/htpasswd", ["-Bbc", htpasswd, username, password])
            auth = "auth:\n  htpasswd:\n    realm: propeller-test\n    path: \(htpasswd)\n"
        }
        if let tokenAuth { auth = tokenAuth }
        let config = """
        version: 0.1
        log:
          level: error
        storage:
          filesystem:
            rootdirectory: \(directory.path)/data
          delete:
            enabled: true
        http:
          addr: 127.0.0.1:\(port)
        \(auth)
        """
        writeFile(directory.path + "/config.yml", config)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
        process.arguments = ["serve", directory.path + "/config.yml"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready when the port accepts connections.
        for _ in 0..<100 {
            if canConnect(port: port) { return }
            usleep(50_000)
        }
        stop()
        throw PropellerError(.internalError, "docker-registry did not start on port \(port)")
    }

    /// Pushes an OCI layout image to this registry with skopeo.
    public func push(layout: String, tag: String, as name: String, credentials: (String, String)? = nil) throws {
        var args = ["copy", "--quiet", "--dest-tls-verify=false"]
        if let credentials { args += ["--dest-creds", "\(credentials.0):\(credentials.1)"] }
        args += ["oci:\(layout):\(tag)", "docker://\(address)/\(name)"]
        try run("/usr/bin/skopeo", args)
    }

    public func stop() {
        stopProcess(process)
        directory.remove()
    }

    deinit { stop() }
}

/// SIGTERM, then SIGKILL after 5 s. Polls instead of Process.waitUntilExit, which spins a run
/// loop and can hang when called from an async test.
public func stopProcess(_ p: Process) {
    guard p.isRunning else { return }
    let pid = p.processIdentifier
    p.terminate()
    for _ in 0..<250 where !hasExited(pid) { usleep(10_000) }
    if !hasExited(pid) { kill(pid, SIGKILL) }
    for _ in 0..<100 where !hasExited(pid) { usleep(10_000) }
}

/// Gone or a zombie, from /proc (Process.isRunning lags when no run loop services it).
public func hasExited(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(after: close)...].dropFirst().first
    return state == "Z" || state == "X"
}

func run(_ tool: String, _ args: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw PropellerError(.internalError, "\(tool) \(args.first ?? "") failed") }
}

/// A listening socket on 127.0.0.1 with a port the kernel chose.
func loopbackListener() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PropellerError(.systemCall, "socket") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    guard bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw PropellerError(.systemCall, "listen on 127.0.0.1")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A port the kernel just handed out on 127.0.0.1 (closed again; the race is acceptable for tests).
public func freeLoopbackPort() throws -> Int {
    let (fd, port) = try loopbackListener()
    close(fd)
    return port
}

public func canConnect(port: Int) -> Bool {
    guard let fd = connectLoopback(port: port) else { return false }
    close(fd)
    return true
}

/// A TCP socket connected to 127.0.0.1:`port`, or nil.
public func connectLoopback(port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard connected == 0 else {
        close(fd)
        return nil
    }
    return fd
}
