import Foundation
import PropellerCore

/// A real mosquitto broker on a free loopback port (anonymous, no persistence), in a temp
/// directory. `restart()` stops it and starts it again on the same port.
public final class MosquittoServer: @unchecked Sendable {
    public let port: Int
    public let directory: TempDirectory
    private var process: Process?

    public init() throws {
        directory = try TempDirectory("propeller-mosquitto")
        port = try freeLoopbackPort()
        writeFile(directory.path + "/mosquitto.conf", """
        listener \(port) 127.0.0.1
        allow_anonymous true
        persistence false
        max_queued_messages 0
        set_tcp_nodelay true
        log_dest none
        """)
        try start()
    }

    public func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/mosquitto")
        p.arguments = ["-c", directory.path + "/mosquitto.conf"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        for _ in 0..<100 {
            if canConnect(port: port) { return }
            usleep(20_000)
        }
        throw PropellerError(.internalError, "mosquitto did not start on port \(port)")
    }

    public func stop() {
        if let p = process { stopProcess(p) }
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
