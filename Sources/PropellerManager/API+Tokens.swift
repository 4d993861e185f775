import Foundation
import Hummingbird
import PropellerCore

/// `/tokens`, `/whoami` and `/audit`: tokens made, listed, rotated and revoked by an admin, the
/// caller's own identity, and the audit log.
extension ManagerAPI {
    struct TokenCreate: Decodable {
        var name: String?
        var role: String?
        var identity: String?
        var namespace: String?
        var expiresInSeconds: Double?
    }

    /// The longest a token may be made to last: ten years.
    static let maxTokenLifetime = 10 * 365 * 86400.0

    /// POST /tokens (and a rotation) answers the secret once, beside the record.
    struct CreatedToken: Encodable {
        var token: APIToken
        var secret: String

        enum Keys: String, CodingKey { case token }
        func encode(to encoder: any Encoder) throws {
            try token.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(secret, forKey: .token)
        }
    }

    struct TokenList: Encodable {
        var tokens: [APIToken]
    }

    struct WhoAmI: Encodable {
        var tokenId: String
        var identity: String
        var role: Role
        var namespace: String?
        var permissions: [Permission]
        var expiresAt: Double?
    }

    struct AuditPage: Encodable {
        var entries: [AuditEntry]
        /// Give it as `after` for the next page.
        var next: Int64
    }

    func addTokenRoutes(_ router: Router<APIContext>) {
        let noAuth = APIError.notFound("tokens: the API runs without authentication (--insecure-no-auth)")
        router.get("/whoami") { _, context in
            let principal = context.principal ?? .anonymous
            let token = try tokens?.list().first { $0.id == principal.tokenID }
            return try encode(WhoAmI(tokenId: principal.tokenID, identity: principal.identity, role: principal.role, namespace: principal.namespace,
                                     permissions: principal.permissions.sorted(), expiresAt: token?.expiresAt))
        }
        router.get("/tokens") { _, context in
            guard let tokens else { throw noAuth }
            // A namespace's admin sees that namespace's tokens alone.
            let bound = context.principal?.namespace
            return try encode(TokenList(tokens: try tokens.list().filter { bound == nil || $0.namespace == bound }))
        }
        router.post("/tokens") { request, context in
            guard let tokens else { throw noAuth }
            let body = try TaskRequest.decode(TokenCreate.self, try await collect(request, limit: 4096),
                                              fields: ["name", "role", "identity", "namespace", "expires_in_seconds"], nested: [:])
            let name = body.name?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            guard !name.isEmpty, name.count <= 100 else { throw APIError.unprocessable("name: required, 1 to 100 characters") }
            guard let roleName = body.role else { throw APIError.unprocessable("role: required, one of \(Role.names)") }
            guard let role = Role(rawValue: roleName) else { throw APIError.unprocessable("role: unknown role \"\(roleName)\" (one of \(Role.names))") }
            let identity = body.identity?.trimmingCharacters(in: .whitespacesAndNewlines)
            if let identity, identity.isEmpty || identity.count > 100 { throw APIError.unprocessable("identity: 1 to 100 characters") }
            var expiresAt: Double?
            if let seconds = body.expiresInSeconds {
                guard seconds.isFinite, seconds >= 1, seconds <= Self.maxTokenLifetime else {
                    throw APIError.unprocessable("expires_in_seconds: 1 to \(Int(Self.maxTokenLifetime)) (ten years)")
                }
                expiresAt = WallClock.now() + seconds
            }
            if let namespace = body.namespace, !(namespaces?.exists(namespace) ?? (namespace == Namespaces.defaultName)) {
                throw APIError.unprocessable("namespace: no namespace \(namespace) (make it first: propeller namespace create \(namespace))")
            }
            // A namespace's admin makes tokens of its namespace alone.
            var namespace = body.namespace
            if let bound = context.principal?.namespace {
                if let asked = namespace, asked != bound {
                    throw APIError(status: 403, "\(context.principal?.description ?? "") makes tokens of namespace \(bound) alone, not \(asked)")
                }
                namespace = bound
            }
            let (token, secret) = try tokens.create(name: name, identity: identity, role: role, namespace: namespace, expiresAt: expiresAt)
            service.logger.notice("API token created", metadata: ["id": "\(token.id)", "name": "\(name)", "role": "\(role.rawValue)"])
            return try encode(CreatedToken(token: token, secret: secret), status: .created)
        }
        router.post("/tokens/{id}/rotate") { _, context in
            guard let tokens else { throw noAuth }
            let id = try context.parameters.require("id")
            // One's own token, or any with tokens:manage.
            let principal = context.principal ?? .anonymous
            let target = try tokens.list().first { $0.id == id }
            guard principal.tokenID == id || (principal.may(.tokensManage) && (principal.namespace == nil || target?.namespace == principal.namespace)) else {
                throw APIError(status: 403, "token \(principal.tokenID) (role \(principal.role.rawValue)) may rotate only itself; "
                                   + "token \(id) needs permission \(Permission.tokensManage.rawValue)")
            }
            guard let (token, secret) = try tokens.rotate(id: id) else { throw APIError.notFound("no token \(id) (or it is revoked)") }
            service.logger.notice("API token rotated", metadata: ["id": "\(token.id)", "name": "\(token.name)"])
            return try encode(CreatedToken(token: token, secret: secret))
        }
        router.delete("/tokens/{id}") { _, context in
            guard let tokens else { throw noAuth }
            let id = try context.parameters.require("id")
            // Revoking the token in use would lock its holder out mid-session (and, for the last
            // one, everyone): it takes another token.
            if context.principal?.tokenID == id {
                throw APIError.conflict("token \(id) is the one making this request: revoke it with another token")
            }
            if let bound = context.principal?.namespace, try tokens.list().first(where: { $0.id == id })?.namespace != bound {
                throw APIError.notFound("no token \(id)")
            }
            guard let token = try tokens.revoke(id: id) else { throw APIError.notFound("no token \(id)") }
            service.logger.notice("API token revoked", metadata: ["id": "\(token.id)", "name": "\(token.name)"])
            return try encode(token)
        }
        // Offboarding: every live token of one identity (a person who left, a leaked CI secret),
        // in the caller's namespace when it is bound to one, but the one making the request.
        router.delete("/tokens") { request, context in
            guard let tokens else { throw noAuth }
            guard let identity = request.uri.queryParameters["identity"].map(String.init), !identity.isEmpty else {
                throw APIError.badRequest("identity: required (DELETE /tokens?identity=NAME revokes every token of that identity)")
            }
            let bound = context.principal?.namespace
            let now = WallClock.now()
            let live = try tokens.list().filter {
                $0.identity == identity && $0.revokedAt == nil && ($0.expiresAt ?? .infinity) > now && (bound == nil || $0.namespace == bound)
            }
            guard !live.isEmpty else { throw APIError.notFound("no live token of identity \(identity)") }
            struct Revoked: Encodable { var revoked: [APIToken]; var kept: [String] }
            var result = Revoked(revoked: [], kept: [])
            for token in live {
                if token.id == context.principal?.tokenID {
                    result.kept.append(token.id)  // the one in use: revoked with another token
                } else if let revoked = try tokens.revoke(id: token.id) {
                    result.revoked.append(revoked)
                }
            }
            service.logger.notice("API tokens of an identity revoked", metadata: ["identity": "\(identity)", "count": "\(result.revoked.count)"])
            return try encode(result)
        }
        router.get("/audit") { request, _ in
            guard let audit else { throw APIError.notFound("audit: this manager keeps no audit log") }
            var after: Int64 = 0
            if let a = request.uri.queryParameters["after"] {
                guard let v = Int64(a), v >= 0 else { throw APIError.badRequest("after: expected a sequence number ≥ 0") }
                after = v
            }
            var limit = 100
            if let l = request.uri.queryParameters["limit"] {
                guard let v = Int(l), (1...1000).contains(v) else { throw APIError.badRequest("limit: expected 1 to 1000") }
                limit = v
            }
            let entries = try audit.entries(after: after, limit: limit)
            return try encode(AuditPage(entries: entries, next: entries.last?.seq ?? after))
        }
    }
}
