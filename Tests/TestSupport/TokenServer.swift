import Foundation
import PropellerCore

/// A small Docker token server for tests of the Bearer flow: `GET /token?service=…&scope=…` with
/// Basic credentials answers an RS256 JWT signed (with openssl) by a self-signed certificate that
/// the registry trusts (`rootcertbundle`). It grants whatever repository scope is asked for.
public final class TokenServer: @unchecked Sendable {
    public let port: Int
    public let directory: TempDirectory
    public let service = "propeller-test"
    public let issuer = "propeller-test-issuer"
    public var realm: String { "http://127.0.0.1:\(port)/token" }
    public var certificate: String { directory.path + "/cert.pem" }
    private let username: String
    private let password: String
    private let listener: Int32
    private let lock = NSLock()
    private var stopped = false
    public private(set) var issued = 0

    public init(username: String, password: String) throws {
        self.username = username
        self.password = password
        directory = try TempDirectory("propeller-token")
        try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", directory.path + "/key.pem",
                                     "-out", directory.path + "/cert.pem", "-days", "1", "-subj", "/CN=propeller-token"])
        try run("/usr/bin/openssl", ["x509", "-in", directory.path + "/cert.pem", "-outform", "DER", "-out", directory.path + "/cert.der"])
        (listener, port) = try loopbackListener()
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    /// The registry's `auth:` section for this server.
    public var registryAuthConfig: String {
        "auth:\n  token:\n    realm: \(realm)\n    service: \(service)\n    issuer: \(issuer)\n    rootcertbundle: \(certificate)\n"
    }

    public func stop() {
        lock.lock()
        let wasStopped = stopped
        stopped = true
        lock.unlock()
        if !wasStopped {
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
            directory.remove()
        }
    }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        var request = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.contains("\r\n\r\n".data(using: .utf8)!) {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { return }
            request.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: request, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let target = lines.first?.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        let auth = lines.first { $0.lowercased().hasPrefix("authorization:") }
            .map { String($0.dropFirst("authorization:".count)).trimmingCharacters(in: .whitespaces) } ?? ""
        let expected = "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        guard auth == expected else {
            respond(fd, status: "401 Unauthorized", body: #"{"details":"bad credentials"}"#)
            return
        }
        let query = URLComponents(string: "http://x" + target)?.queryItems ?? []
        let scopes = query.filter { $0.name == "scope" }.compactMap(\.value)
        let access = scopes.compactMap { scope -> [String: Any]? in
            let parts = scope.split(separator: ":")
            guard parts.count == 3 else { return nil }
            return ["type": String(parts[0]), "name": String(parts[1]), "actions": parts[2].split(separator: ",").map(String.init)]
        }
        do {
            let token = try jwt(access: access)
            lock.lock(); issued += 1; lock.unlock()
            respond(fd, status: "200 OK", body: #"{"token":"\#(token)","expires_in":300}"#)
        } catch {
            respond(fd, status: "500 Internal Server Error", body: "{}")
        }
    }

    private func respond(_ fd: Int32, status: String, body: String) {
        let response = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        _ = response.withCString { write(fd, $0, strlen($0)) }
    }

    private func jwt(access: [[String: Any]]) throws -> String {
        let der = try Data(contentsOf: URL(fileURLWithPath: directory.path + "/cert.der"))
        let header: [String: Any] = ["alg": "RS256", "typ": "JWT", "x5c": [der.base64EncodedString()]]
        let now = Int(Date().timeIntervalSince1970)
        let claims: [String: Any] = ["iss": issuer, "sub": username, "aud": service, "exp": now + 300, "nbf": now - 30,
                                     "iat": now, "jti": UUID().uuidString, "access": access]
        let input = try base64url(JSONSerialization.data(withJSONObject: header)) + "." + base64url(JSONSerialization.data(withJSONObject: claims))
        let inputPath = directory.path + "/input-\(UUID().uuidString)"
        let sigPath = inputPath + ".sig"
        try Data(input.utf8).write(to: URL(fileURLWithPath: inputPath))
        defer {
            try? FileManager.default.removeItem(atPath: inputPath)
            try? FileManager.default.removeItem(atPath: sigPath)
        }
        try run("/usr/bin/openssl", ["dgst", "-sha256", "-sign", directory.path + "/key.pem", "-out", sigPath, inputPath])
        return input + "." + base64url(try Data(contentsOf: URL(fileURLWithPath: sigPath)))
    }

    private func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    deinit { stop() }
}
