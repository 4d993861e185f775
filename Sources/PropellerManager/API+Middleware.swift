import Logging
import Foundation
import HTTPTypes
import Hummingbird
import PropellerCore
import PropellerTracing
import Tracing

/// Every error leaves as `{"error": "…"}` with its status; latencies go to the metrics.
struct ErrorAndMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ManagerMetrics
    /// A server span per request (under the caller's, when it sends a W3C `traceparent`), the
    /// task-local context of the handler: a task created here starts its trace under it.
    var traces = Traces()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard traces.enabled else { return try await respond(request, context: context, next: next) }
        var carrier: [String: String] = [:]
        for name in ["traceparent", "tracestate"] {
            if let field = HTTPField.Name(name), let value = request.headers[field] { carrier[name] = value }
        }
        let span = traces.start("\(request.method.rawValue) \(request.uri.path)", parent: traces.context(carrier), kind: .server)
        defer { span.end() }
        let response = try await ServiceContext.withValue(span.context) { try await respond(request, context: context, next: next) }
        let route = context.endpointPath ?? "unmatched"
        span.operationName = "\(request.method.rawValue) \(route)"
        span.attributes["http.request.method"] = request.method.rawValue
        span.attributes["http.route"] = route
        span.attributes["http.response.status_code"] = Int(response.status.code)
        if response.status.code >= 500 { span.setStatus(SpanStatus(code: .error)) }
        return response
    }

    private func respond(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            let message = error.body ?? Self.defaultMessage(error.status, request)
            response = jsonError(status: error.status, message)
        } catch {
            let e = APIError.from(error)
            if e.status >= 500 {
                // The detail (a database path, GRDB's SQL, an errno) stays in the log; the caller
                // gets an id to quote to the operator.
                let id = String(UInt32.random(in: .min ... .max), radix: 16)
                context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(e.message)", "error_id": "\(id)"])
                response = jsonError(status: HTTPResponse.Status(code: e.status), "internal error \(id): the manager's log has the details")
            } else {
                response = jsonError(status: HTTPResponse.Status(code: e.status), e.message)
            }
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

/// Bearer-token authentication on everything but /health, /openapi.json (public documentation) and the web console's
/// files under /ui (the page asks for a token and sends it with every API call): the token's SHA-256 must be one of
/// the manager's unrevoked tokens. Refusals are logged (never the token).
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: APITokens
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" || request.uri.path == "/openapi.json" || ManagerAPI.isConsolePath(request.uri.path) {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization] else {
            refuse(request, "no token")
            throw APIError.unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN' (PROPELLER_API_TOKEN for the CLI)")
        }
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), tokens.authenticate(String(header.dropFirst(prefix.count))) != nil else {
            refuse(request, "unknown or revoked token")
            throw APIError.unauthorized("invalid bearer token")
        }
        return try await next(request, context)
    }

    private func refuse(_ request: Request, _ why: String) {
        logger.warning("API request refused", metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "reason": "\(why)"])
    }
}
