import Foundation
import Hummingbird
import PropellerCore

/// Every error leaves as `{"error": "…"}` with its status; latencies go to the metrics.
struct ErrorAndMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ManagerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            let message = error.body ?? Self.defaultMessage(error.status, request)
            response = jsonError(status: error.status, message)
        } catch {
            let e = APIError.from(error)
            response = jsonError(status: HTTPResponse.Status(code: e.status), e.message)
            if e.status >= 500 { context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(e.message)"]) }
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        metrics.observe(method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: response.status.code, seconds: seconds)
        return response
    }

    static func defaultMessage(_ status: HTTPResponse.Status, _ request: Request) -> String {
        if status == .notFound { return "no route \(request.method.rawValue) \(request.uri.path)" }
        return status.reasonPhrase
    }
}

func jsonError(status: HTTPResponse.Status, _ message: String) -> Response {
    let body = (try? JSONSerialization.data(withJSONObject: ["error": message], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{\"error\":\"internal error\"}".utf8)
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"propeller\"" }
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
}

/// Bearer-token authentication on everything but /health. Tokens are compared in constant time.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN' (PROPELLER_API_TOKEN for the CLI)")
        }
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), Self.constantTimeEqual(Array(header.dropFirst(prefix.count).utf8), token) else {
            throw APIError.unauthorized("invalid bearer token")
        }
        return try await next(request, context)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}
