#if canImport(Glibc)
import Glibc
#endif
import CHTTP
import PropellerCore

/// One HTTP exchange over libcurl, synchronously, with the body streamed to a closure.
/// The registry client and the CLI's API client share it.
public struct HTTPTransport: Sendable {
    public struct Response: Sendable {
        public var status: Int
        /// Header names lowercased; the last value of a repeated header wins.
        public var headers: [String: String]
    }

    private static let initialized: Bool = {
        ph_global_init()
        return true
    }()

    public var connectTimeoutSeconds = 30
    /// A transfer that moves no byte for this long is aborted (a hung registry); 0: never.
    public var stallTimeoutSeconds = 60

    /// A CA bundle that verifies HTTPS servers instead of the system's (a private CA).
    public var caFile: String?

    public init() {}

    /// Performs `method url`, sending `body` when given. `onBody` receives the response body in
    /// chunks; throwing from it aborts.
    public func send(_ method: String, _ url: String, headers: [String], body: [UInt8]? = nil, range: String? = nil, followRedirects: Bool = true,
              onBody: (_ status: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws -> Response {
        _ = Self.initialized
        final class Context {
            var onBody: (Int, UnsafeRawBufferPointer) throws -> Void
            var error: (any Error)?
            var headers: [String: String] = [:]
            var status = 0
            init(_ onBody: @escaping (Int, UnsafeRawBufferPointer) throws -> Void) { self.onBody = onBody }
        }
        return try withoutActuallyEscaping(onBody) { handler in
            let context = Context(handler)
            let cStrings = headers.map { strdup($0) }
            let bodyCopy: UnsafeMutablePointer<CChar>? = body.map { bytes in
                let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, bytes.count))
                bytes.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(p), byteCount: bytes.count) }
                return p
            }
            defer { bodyCopy?.deallocate() }
            defer { cStrings.forEach { free($0) } }
            var response = ph_response()
            let constHeaders = cStrings.map { UnsafePointer($0) }
            constHeaders.withUnsafeBufferPointer { hbuf in
                withUnsafeMutablePointer(to: &response) { out in
                    let unmanaged = Unmanaged.passUnretained(context).toOpaque()
                    let rangeC = range.map { strdup($0) } ?? nil
                    let caC = caFile.map { strdup($0) } ?? nil
                    defer { free(rangeC); free(caC) }
                    method.withCString { m in
                        url.withCString { u in
                            var request = ph_request()
                            request.method = m
                            request.url = u
                            request.headers = UnsafePointer(hbuf.baseAddress)
                            request.nheaders = hbuf.count
                            request.range = UnsafePointer(rangeC)
                            request.ca_file = UnsafePointer(caC)
                            request.connect_timeout_s = connectTimeoutSeconds
                            request.low_speed_time_s = stallTimeoutSeconds
                            request.follow_redirects = followRedirects ? 1 : 0
                            request.context = unmanaged
                            request.body = UnsafePointer(bodyCopy)
                            request.body_len = body?.count ?? 0
                            request.on_body = { data, size, ctx in
                                guard let ctx, let data else { return 0 }
                                let c = Unmanaged<Context>.fromOpaque(ctx).takeUnretainedValue()
                                do {
                                    try c.onBody(c.status, UnsafeRawBufferPointer(start: data, count: size))
                                    return size
                                } catch {
                                    c.error = error
                                    return 0
                                }
                            }
                            request.on_header = { line, size, ctx in
                                guard let ctx, let line else { return size }
                                let c = Unmanaged<Context>.fromOpaque(ctx).takeUnretainedValue()
                                let text = String(decoding: UnsafeRawBufferPointer(start: line, count: size), as: UTF8.self)
                                if text.hasPrefix("HTTP/") {  // a new response (after a redirect or a 100)
                                    c.headers = [:]
                                    c.status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
                                }
                                if let colon = text.firstIndex(of: ":") {
                                    let name = text[..<colon].lowercased()
                                    let value = String(text[text.index(after: colon)...]).trimmingWhitespace()
                                    c.headers[name] = value
                                }
                                return size
                            }
                            ph_perform(&request, out)
                        }
                    }
                }
            }
            if let error = context.error { throw error }
            if response.curl_code != 0 {
                let message = withUnsafeBytes(of: response.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                throw PropellerError(.systemCall, "\(method) \(Self.redacted(url)): \(message)")
            }
            return Response(status: Int(response.status), headers: context.headers)
        }
    }

    /// A URL without its query (tokens and signed storage URLs carry secrets there).
    public static func redacted(_ url: String) -> String {
        String(url.prefix { $0 != "?" })
    }
}
