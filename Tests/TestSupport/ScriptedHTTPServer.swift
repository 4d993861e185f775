import Foundation
import PropellerCore

/// A loopback HTTP/1.1 server whose answers a test scripts, for faults a real registry cannot be
/// made to produce (a connection cut in the middle of a blob). A named fake: the ordinary registry
/// behaviour is tested against real docker-registry processes.
public final class ScriptedHTTPServer: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var headers: [String: String]
    }

    public struct Reply: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: Data
        /// Close the connection after this many body bytes (the Content-Length still says all).
        public var cutAfter: Int?
        /// Send `body` over and over, without a Content-Length, until the client goes away (a
        /// hostile registry's endless answer).
        public var endless: Bool

        public init(status: Int, headers: [String: String] = [:], body: Data = Data(), cutAfter: Int? = nil, endless: Bool = false) {
            self.status = status
            self.headers = headers
            self.body = body
            self.cutAfter = cutAfter
            self.endless = endless
        }
    }

    public let port: Int
    private let listener: Int32
    private let handler: @Sendable (Request) -> Reply
    private let lock = NSLock()
    private var log: [Request] = []

    public var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return log
    }

    public init(handler: @escaping @Sendable (Request) -> Reply) throws {
        self.handler = handler
        (listener, port) = try loopbackListener()
        Thread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { return }
                serve(client)
                close(client)
            }
        }.start()
    }

    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve(_ fd: Int32) {
        var raw = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let end = Data("\r\n\r\n".utf8)
        while raw.range(of: end) == nil {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { return }
            raw.append(contentsOf: buffer[0..<n])
        }
        let lines = String(decoding: raw, as: UTF8.self).components(separatedBy: "\r\n")
        let first = lines.first?.split(separator: " ").map(String.init) ?? []
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let request = Request(method: first.first ?? "", path: first.dropFirst().first ?? "", headers: headers)
        lock.lock()
        log.append(request)
        lock.unlock()
        let reply = handler(request)
        var head = "HTTP/1.1 \(reply.status) X\r\n" + (reply.endless ? "" : "Content-Length: \(reply.body.count)\r\n") + "Connection: close\r\n"
        for (k, v) in reply.headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        var out = Data(head.utf8)
        out.append(reply.body.prefix(reply.cutAfter ?? reply.body.count))
        guard send(fd, out) else { return }
        if reply.endless && !reply.body.isEmpty {
            var sent = 0
            while sent < 64 << 30, send(fd, reply.body) { sent += reply.body.count }
            endlessBytes.withLock { $0 += sent }
        }
    }

    /// Bytes of endless answers sent before each client went away.
    public let endlessBytes = Locked(0)

    private func send(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.send(fd, bytes.baseAddress.map { $0 + done }, bytes.count - done, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    deinit { stop() }
}
