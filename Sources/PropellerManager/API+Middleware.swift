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

/// Authentication, authorization and the audit log, before any handler runs:
/// - the request's rule comes from ``AccessRules`` (open, any token, or one permission);
/// - the bearer token's SHA-256 must be an unrevoked, unexpired token's (refusals are logged,
///   never the token);
/// - its role must hold the rule's permission, else 403 naming the permission; a path without a
///   rule is an admin's alone;
/// - writes (and secret reads) are recorded in the audit log with their status, refusals (403)
///   included.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = APIContext
    /// Nil: the API runs without authentication (`--insecure-no-auth`): every caller is
    /// ``Principal/anonymous``, an admin.
    let tokens: APITokens?
    let audit: AuditLog?
    /// Nil: only `default` exists.
    let namespaces: Namespaces?
    /// Nil: no nonces (`?x-nonce=` is refused like a missing token).
    let nonces: ActorNonces?
    /// Identities' grants on actors (nil: none).
    let grants: (any GrantStore)?
    /// The id and namespace of the task or actor (`collection` "tasks" or "actors") that
    /// `handle` names (an id, else a name or an id prefix in `namespace`, nil: any), or nil.
    let resolve: @Sendable (_ collection: String, _ handle: String, _ namespace: String?) async throws -> (id: String, namespace: String)?
    /// The managers that share the store (nil: this one alone): a request one of them forwarded
    /// is audited with its caller's address, which the forwarder names.
    var cluster: (any ClusterView)?
    let logger: Logger

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        let rule = AccessRules.rule(method: request.method, path: request.uri.path)
        if rule?.access == .open { return try await next(request, context) }
        let principal = try authenticate(request, rule)
        var context = context
        context.principal = principal
        let audited = rule?.audited ?? (request.method != .get && request.method != .head)
        do {
            // A role that lacks an actor's permission may be made up for by a grant on that
            // actor, decided once the path's actor is known.
            var deniedByRole: APIError?
            do {
                try authorize(principal, rule, request)
            } catch let denied as APIError where denied.status == 403 && principal.nonce == nil && rule?.pattern.first == "actors" && grants != nil {
                deniedByRole = denied
            }
            let (namespace, resolvedPath, named) = try await namespace(of: request, rule, principal)
            if let deniedByRole {
                guard let named, try hasGrant(principal, on: named, rule) else { throw deniedByRole }
            }
            context.namespace = namespace
            if let nonce = principal.nonce {
                // A nonce works on its own actor alone, and each request spends one use.
                guard rule?.pattern.first == "actors", named == nonce.actorId else {
                    throw APIError(status: 403, "\(principal.description) works on that actor alone")
                }
                guard try nonces?.use(nonce) == true else { throw APIError.unauthorized("nonce \(nonce.id) has no uses left") }
            }
            var request = request
            if let resolved = resolvedPath {
                // The route's {id} (the router has matched it already) and the path both name
                // the id from here on.
                context.coreContext.parameters["id"] = Substring(resolved.id)
                var head = request.head
                head.path = resolved.path
                request = Request(head: head, body: request.body)
            }
            let response = try await next(request, context)
            if audited { record(request, context, principal, rule, status: Int(response.status.code)) }
            return response
        } catch {
            if audited || (error as? APIError)?.status == 403 {
                let status = (error as? HTTPError).map { Int($0.status.code) } ?? APIError.from(error).status
                record(request, context, principal, rule, status: status)
            }
            throw error
        }
    }

    private func authenticate(_ request: Request, _ rule: AccessRules.Rule?) throws -> Principal {
        if request.headers[.authorization] == nil, let presented = request.uri.queryParameters["x-nonce"] {
            guard rule?.pattern.first == "actors", rule?.pattern.count ?? 0 >= 2, let nonces, let nonce = try nonces.find(String(presented)) else {
                refuse(request, "unknown, used up or expired nonce")
                throw APIError.unauthorized("invalid nonce (unknown, used up, expired, or not for an actor's route)")
            }
            return Principal(tokenID: nonce.id, identity: "nonce:\(nonce.id)", role: .invoker, nonce: nonce)
        }
        guard let tokens else { return .anonymous }
        guard let header = request.headers[.authorization] else {
            refuse(request, "no token")
            throw APIError.unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN' (PROPELLER_API_TOKEN for the CLI)")
        }
        let prefix = "Bearer "
        guard header.hasPrefix(prefix) else {
            refuse(request, "not a bearer token")
            throw APIError.unauthorized("invalid bearer token")
        }
        switch tokens.authenticate(String(header.dropFirst(prefix.count))) {
        case .success(let token):
            return token.principal
        case .failure(.expired(let at)):
            refuse(request, "expired token")
            throw APIError.unauthorized("token expired at \(WallClock.iso8601(at)): ask an admin for a new one")
        case .failure(.unknown):
            refuse(request, "unknown or revoked token")
            throw APIError.unauthorized("invalid bearer token")
        }
    }

    private func authorize(_ principal: Principal, _ rule: AccessRules.Rule?, _ request: Request) throws {
        let who = principal.description
        switch rule?.access {
        case .open, .authenticated:
            return
        case .permission(let permission):
            if permission.isClusterWide, let bound = principal.namespace, principal.role.permissions.contains(permission) {
                throw APIError(status: 403, "\(who) lacks permission \(permission.rawValue) for \(rule?.route ?? request.uri.path): "
                                   + "it is the cluster's, and the token is bound to namespace \(bound)")
            }
            guard principal.may(permission) else {
                logger.notice("API request forbidden", metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                                                                   "token": "\(principal.tokenID)", "missing": "\(permission.rawValue)"])
                throw APIError(status: 403, "\(who) lacks permission \(permission.rawValue) for \(rule?.route ?? request.uri.path)")
            }
        case nil:
            guard principal.role == .admin, principal.namespace == nil else {
                throw APIError(status: 403, "\(who): \(request.method.rawValue) \(request.uri.path) has no access rule; only an admin may call it")
            }
        }
    }

    /// The request's namespace (see ``APIContext/namespace``); a task or actor named in the path
    /// must be in it, else it is "not there" (404, as a missing one: a token bound to a namespace
    /// learns nothing of the others). A name or an id prefix in the path is replaced by the id
    /// (the second value: the new path, or nil).
    private func namespace(of request: Request, _ rule: AccessRules.Rule?, _ principal: Principal) async throws
        -> (String, (id: String, path: String)?, named: String?) {
        let asked = request.uri.queryParameters["namespace"].map(String.init)
        var namespace: String
        if let bound = principal.namespace {
            if let asked, asked != bound {
                throw APIError(status: 403, "\(principal.description) may not work in namespace \(asked)")
            }
            namespace = bound
        } else {
            namespace = asked ?? Namespaces.defaultName
        }
        if namespace != "*" && namespace != Namespaces.defaultName && !(namespaces?.exists(namespace) ?? false) {
            throw APIError.notFound("no namespace \(namespace)")
        }
        // /tasks/{id}…, /actors/{id}…: what it names, and its namespace.
        guard let rule, rule.pattern.count >= 2, rule.pattern[1] == "{id}", rule.pattern[0] == "tasks" || rule.pattern[0] == "actors" else {
            return (namespace, nil, nil)
        }
        let collection = String(rule.pattern[0])
        var segments = request.uri.path.split(separator: "/", omittingEmptySubsequences: false)
        // "", "tasks", handle, …
        guard segments.count >= 3, let handle = String(segments[2]).removingPercentEncoding, !handle.isEmpty else { return (namespace, nil, nil) }
        let scope = namespace == "*" || principal.nonce != nil ? nil : namespace
        guard let found = try await resolve(collection, handle, scope) else { return (namespace, nil, nil) }
        if found.namespace != namespace && (asked != nil || principal.namespace != nil) && namespace != "*" {
            // An identity granted this actor reaches it from another namespace (by its id).
            guard collection == "actors", try hasGrant(principal, on: found.id, rule) else {
                throw APIError.notFound("no \(collection.dropLast()) \(handle) in namespace \(namespace)")
            }
        }
        guard found.id != handle else { return (found.namespace, nil, found.id) }
        segments[2] = Substring(found.id)
        let query = request.uri.query.map { "?" + $0 } ?? ""
        return (found.namespace, (found.id, segments.joined(separator: "/") + query), found.id)
    }

    /// Whether the principal's identity holds a grant on actor `actorID` at the level the
    /// rule's permission needs.
    private func hasGrant(_ principal: Principal, on actorID: String, _ rule: AccessRules.Rule?) throws -> Bool {
        guard principal.nonce == nil, let grants, case .permission(let p) = rule?.access, let needed = ActorAccessLevel.needed(for: p),
              let grant = try grants.grant(actorId: actorID, identity: principal.identity) else { return false }
        return grant.level >= needed
    }

    private func record(_ request: Request, _ context: APIContext, _ principal: Principal, _ rule: AccessRules.Rule?, status: Int) {
        audit?.record(AuditEntry(at: WallClock.now(), identity: principal.identity, tokenId: principal.tokenID, role: principal.role.rawValue,
                                 method: request.method.rawValue, path: request.uri.path, route: rule?.route ?? "", status: status,
                                 peer: peer(request, context)))
    }

    /// The caller's address: the connection's, or, for a request another manager of the cluster
    /// forwarded, the address that manager names with "via" and its id. The forwarder's word is
    /// taken only from a connection from the address it advertises (an IP literal), so a
    /// client cannot name another address by sending the headers itself.
    func peer(_ request: Request, _ context: APIContext) -> String {
        guard let by = request.headers[ManagerNode.forwardedHeader], let claimed = request.headers[ManagerNode.forwardedForHeader],
              let cluster, let members = try? cluster.status().members, let member = members.first(where: { $0.id == by }),
              let host = URLComponents(string: member.address)?.host?.trimmingCharacters(in: CharacterSet(charactersIn: "[]")),
              host == context.peer else { return context.peer }
        return "\(claimed.prefix(64)) via \(by)"
    }

    private func refuse(_ request: Request, _ why: String) {
        logger.warning("API request refused", metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "reason": "\(why)"])
    }
}
