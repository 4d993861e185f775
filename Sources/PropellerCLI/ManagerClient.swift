import ArgumentParser
import Foundation
import PropellerCore
import PropellerRunCLI
import PropellerImage

/// Options of every command that talks to the manager's REST API.
struct ClientOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Manager URL (env PROPELLER_MANAGER_URL, default http://127.0.0.1:7070).", valueName: "url"))
    var manager: String = Environment.current["PROPELLER_MANAGER_URL"] ?? "http://127.0.0.1:7070"

    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the API token (else env PROPELLER_API_TOKEN).", valueName: "file"))
    var tokenFile: String?

    @Option(name: .customLong("api-token"), help: .hidden)
    var apiToken: String?

    @Option(name: .customLong("manager-ca"), help: ArgumentHelp("CA certificate that signs the manager's HTTPS certificate (env PROPELLER_MANAGER_CA; default: the system's CAs).", valueName: "file"))
    var managerCA: String?

    @Flag(name: .customLong("insecure-http"), help: "Send the API token over plain http to a manager that is not on this machine.")
    var insecureHTTP = false

    @Option(help: ArgumentHelp("Read options from FILE (`key = value` lines: manager, manager-ca, api-token; mode 600), like the one `propeller provision` writes; flags on the command line win.", valueName: "file"))
    var config: String?

    @Flag(help: "Print JSON for scripts instead of tables.")
    var json = false

    @Option(name: [.customShort("n"), .customLong("namespace")],
            help: ArgumentHelp("Work in this namespace (env PROPELLER_NAMESPACE; default: the token's, else default; * lists every namespace).", valueName: "name"))
    var namespace: String?

    func client() throws -> ManagerClient {
        var token = apiToken ?? Environment.current["PROPELLER_API_TOKEN"]
        if let tokenFile { token = try readSecretFile(absolutePath(tokenFile), what: "token file") }
        if token?.isEmpty ?? true { token = nil }
        var base = manager
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://") else { throw ValidationError("invalid --manager \"\(manager)\": expected http:// or https://") }
        if token != nil, base.hasPrefix("http://"), !insecureHTTP, !Self.isLoopback(url: base) {
            throw ValidationError("refusing to send the API token over plain http to \(base): use https:// (the manager's --tls-cert), or --insecure-http if the network is trusted")
        }
        var client = ManagerClient(base: base, token: token, caFile: (managerCA ?? Environment.current["PROPELLER_MANAGER_CA"]).map(absolutePath))
        client.namespace = namespace ?? Environment.current["PROPELLER_NAMESPACE"].flatMap { $0.isEmpty ? nil : $0 }
        return client
    }

    /// Whether `url`'s host is this machine: localhost, 127.0.0.0/8 or ::1.
    static func isLoopback(url: String) -> Bool {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        rest = rest.prefix { $0 != "/" }
        let host: Substring
        if rest.hasPrefix("[") {
            host = rest.dropFirst().prefix { $0 != "]" }
        } else {
            host = rest.prefix { $0 != ":" }
        }
        return host == "localhost" || host == "::1" || (host.hasPrefix("127.") && host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { UInt8($0) != nil })
    }
}

/// An error from the manager (or from reaching it), shown as one line.
struct ClientError: Error, CustomStringConvertible {
    var message: String
    var status: Int
    var description: String { message }
}

/// The CLI's side of the REST API, over libcurl.
struct ManagerClient: Sendable {
    let base: String
    let token: String?
    var caFile: String?
    /// Sent as `?namespace=` with every request (nil: the manager's choice).
    var namespace: String?

    /// The URL of `path`, with the namespace.
    func url(_ path: String) -> String {
        guard let namespace else { return base + path }
        let encoded = namespace.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? namespace
        return base + path + (path.contains("?") ? "&" : "?") + "namespace=" + encoded
    }

    private var headers: [String] {
        var h = ["Accept: application/json", "Content-Type: application/json"]
        if let token { h.append("Authorization: Bearer \(token)") }
        return h
    }

    /// How long a request is sent again while the managers elect a leader (env
    /// PROPELLER_ELECTION_WAIT, seconds; default 20).
    static var electionWait: Duration {
        .milliseconds(Int64((Double(Environment.current["PROPELLER_ELECTION_WAIT"] ?? "") ?? 20) * 1000))
    }

    /// Sends a request and returns the body of a 2xx answer; anything else throws the API's
    /// `{"error": …}` message.
    func send(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> [UInt8] {
        try exchange(method, path, body: body).body
    }

    /// Like ``send(_:_:body:)``, with the request's content type and the answer's status and headers.
    func exchange(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json",
                  stallSeconds: Int = 60) throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        var data: [UInt8] = []
        var headers = self.headers.filter { !$0.hasPrefix("Content-Type:") }
        headers.append("Content-Type: \(contentType)")
        var transport = HTTPTransport()
        transport.caFile = caFile
        transport.connectTimeoutSeconds = 10
        transport.stallTimeoutSeconds = stallSeconds
        var response: HTTPTransport.Response
        // A manager that is not leading and knows no leader (an election under way) answers 503
        // with Retry-After before doing anything: sending again is safe, for 20 s at most.
        let deadline = ContinuousClock.now + Self.electionWait
        while true {
            data = []
            do {
                response = try transport.send(method, url(path), headers: headers, body: body, followRedirects: false) { _, bytes in data.append(contentsOf: bytes) }
            } catch {
                throw ClientError(message: "cannot reach the manager at \(base): \(error)", status: 0)
            }
            guard response.status == 503, response.headers["retry-after"] != nil, ContinuousClock.now < deadline else { break }
            usleep(250_000)
        }
        guard (200..<300).contains(response.status) else { throw Self.error(status: response.status, body: data) }
        return (response.status, response.headers, data)
    }

    /// GETs `path` into the file descriptor `fd` as it arrives (a 2xx answer); anything else
    /// throws the API's message.
    func download(_ path: String, to fd: Int32) throws {
        var transport = HTTPTransport()
        transport.caFile = caFile
        transport.connectTimeoutSeconds = 10
        var errorBody: [UInt8] = []
        let response: HTTPTransport.Response
        do {
            response = try transport.send("GET", url(path), headers: headers, followRedirects: false) { status, bytes in
                guard (200..<300).contains(status) else { return errorBody.append(contentsOf: bytes) }
                var at = 0
                while at < bytes.count {
                    let n = write(fd, bytes.baseAddress.map { $0 + at }, bytes.count - at)
                    guard n > 0 else { throw ClientError(message: "write: \(String(cString: strerror(errno)))", status: 0) }
                    at += n
                }
            }
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(message: "cannot reach the manager at \(base): \(error)", status: 0)
        }
        guard (200..<300).contains(response.status) else { throw Self.error(status: response.status, body: errorBody) }
    }

    func get<T: Decodable>(_ path: String, as: T.Type) throws -> T {
        try decode(T.self, try send("GET", path))
    }

    func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        do {
            return try WireCoding.decoder().decode(T.self, from: Data(bytes))
        } catch {
            throw ClientError(message: "unexpected answer from the manager: \(error)", status: 0)
        }
    }

    /// Reads an NDJSON stream, handing each line to `onLine` until the server ends it.
    func stream(_ path: String, onLine: ([UInt8]) throws -> Void) throws {
        var transport = HTTPTransport()
        transport.caFile = caFile
        transport.connectTimeoutSeconds = 10
        transport.stallTimeoutSeconds = 0
        var pending: [UInt8] = []
        var errorBody: [UInt8] = []
        var response: HTTPTransport.Response
        let deadline = ContinuousClock.now + Self.electionWait
        while true {
            errorBody = []
            do {
                response = try transport.send("GET", url(path), headers: headers, followRedirects: false) { status, bytes in
                    guard (200..<300).contains(status) else { errorBody.append(contentsOf: bytes); return }
                    pending.append(contentsOf: bytes)
                    while let nl = pending.firstIndex(of: 0x0a) {
                        let line = Array(pending[..<nl])
                        pending.removeSubrange(...nl)
                        if !line.isEmpty { try onLine(line) }
                    }
                }
            } catch let error as ClientError {
                throw error
            } catch {
                throw ClientError(message: "cannot reach the manager at \(base): \(error)", status: 0)
            }
            // An election under way (see exchange): nothing was sent on, so ask again.
            guard response.status == 503, response.headers["retry-after"] != nil, ContinuousClock.now < deadline else { break }
            usleep(250_000)
        }
        guard (200..<300).contains(response.status) else { throw Self.error(status: response.status, body: errorBody) }
    }

    static func error(status: Int, body: [UInt8]) -> ClientError {
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], let message = object["error"] as? String {
            return ClientError(message: message, status: status)
        }
        return ClientError(message: "the manager answered HTTP \(status)", status: status)
    }
}

/// Column-aligned text for people.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// "Key       value" lines for people, keys padded to the longest.
func printFields(_ fields: [(String, String)]) {
    let width = (fields.map(\.0.count).max() ?? 0) + 2
    for (key, value) in fields { print(key.padding(toLength: width, withPad: " ", startingAt: 0) + value) }
}

/// "3s ago", "2m ago" for a wall-clock time.
func age(_ time: Double?) -> String {
    guard let time else { return "-" }
    return span(Date().timeIntervalSince1970 - time) + " ago"
}

/// "3s", "2m", "5h", "2d": a span of seconds, roughly.
func span(_ seconds: Double) -> String {
    let s = max(0, seconds)
    if s < 60 { return "\(Int(s))s" }
    if s < 3600 { return "\(Int(s / 60))m" }
    if s < 86400 { return "\(Int(s / 3600))h" }
    return "\(Int(s / 86400))d"
}

func printJSON(_ bytes: [UInt8]) {
    if let object = try? JSONSerialization.jsonObject(with: Data(bytes)),
       let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
        print(String(decoding: pretty, as: UTF8.self))
    } else {
        print(String(decoding: bytes, as: UTF8.self))
    }
}
