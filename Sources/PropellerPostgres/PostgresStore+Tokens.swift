import PostgresNIO
import PropellerCore
import PropellerManager

extension PostgresStore: AuditStore, NamespaceStore, NonceStore, GrantStore {
    static let tokenSelect = "SELECT id, name, identity, role, namespace, created_at, expires_at, rotated_at, revoked_at, sha256 FROM api_tokens"

    static func token(_ row: PostgresRow) throws -> (APIToken, String) {
        let (id, name, identity, role, namespace, created, expires, rotated, revoked, sha) =
            try row.decode((String, String, String?, String, String?, Double, Double?, Double?, Double?, String).self)
        guard let parsed = Role(rawValue: role) else { throw PropellerError(.internalError, "API token \(id): unknown role \(role)") }
        return (APIToken(id: id, name: name, identity: identity, role: parsed, namespace: namespace, createdAt: created, expiresAt: expires, rotatedAt: rotated,
                         revokedAt: revoked), sha)
    }

    public func insertToken(_ token: APIToken, sha256: String) throws {
        try write("insert API token \(token.id)") { session in
            [session.send("""
                INSERT INTO api_tokens (id, name, identity, role, namespace, sha256, created_at, expires_at, rotated_at, revoked_at)
                VALUES (\(token.id), \(token.name), \(token.identity), \(token.role.rawValue), \(token.namespace), \(sha256), \(token.createdAt), \(token.expiresAt),
                        \(token.rotatedAt), \(token.revokedAt))
                ON CONFLICT (sha256) DO NOTHING
                """)]
        }
    }

    public func tokens() throws -> [(token: APIToken, sha256: String)] {
        try read("read API tokens") { session in
            try session.run("\(unescaped: Self.tokenSelect) ORDER BY created_at, id").map { row in
                let (token, sha) = try Self.token(row)
                return (token, sha)
            }
        }
    }

    private func token(id: String) throws -> APIToken? {
        try read("read API token \(id)") { session in
            try session.run("\(unescaped: Self.tokenSelect) WHERE id = \(id)").first { _ in true }.map { try Self.token($0).0 }
        }
    }

    public func revokeToken(id: String, at time: Double) throws -> APIToken? {
        try write("revoke API token \(id)") { session in
            [session.send("UPDATE api_tokens SET revoked_at = \(time) WHERE id = \(id) AND revoked_at IS NULL")]
        }
        return try token(id: id)
    }

    public func rotateToken(id: String, sha256: String, at time: Double) throws -> APIToken? {
        // Only the leader writes (followers forward commands), so nothing comes in between.
        guard let current = try token(id: id), current.revokedAt == nil else { return nil }
        try write("rotate API token \(id)") { session in
            [session.send("UPDATE api_tokens SET sha256 = \(sha256), rotated_at = \(time) WHERE id = \(id) AND revoked_at IS NULL")]
        }
        return try token(id: id)
    }

    public func pruneAudit(before: Double, at now: Double) throws -> Int {
        // Only the leader writes, so the count read first is what the delete removes.
        let count = try read("count audit entries before \(before)") { session in
            try Self.count(session.run("SELECT COUNT(*) FROM audit_log WHERE at < \(before)"))
        }
        try write("prune the audit log before \(before)") { session in
            [session.send("INSERT INTO audit_prunes (before, at) VALUES (\(before), \(now))"),
             session.send("DELETE FROM audit_log WHERE at < \(before)")]
        }
        return count
    }

    public func pruneTokens(endedBefore before: Double) throws -> [APIToken] {
        let gone = try read("read API tokens ended before \(before)") { session in
            try session.run("""
                \(unescaped: Self.tokenSelect) WHERE created_at > 0
                AND ((revoked_at IS NOT NULL AND revoked_at < \(before)) OR (expires_at IS NOT NULL AND expires_at < \(before)))
                """).map { try Self.token($0).0 }
        }
        guard !gone.isEmpty else { return [] }
        let ids = gone.map(\.id)
        try write("prune \(ids.count) API tokens") { session in
            [session.send("DELETE FROM api_tokens WHERE id = ANY(\(ids))")]
        }
        return gone
    }

    public func appendAudit(_ entries: [AuditEntry]) throws {
        try write("append \(entries.count) audit entries") { session in
            entries.map { e in
                session.send("""
                    INSERT INTO audit_log (at, identity, token_id, role, method, path, route, status, peer)
                    VALUES (\(e.at), \(e.identity), \(e.tokenId), \(e.role), \(e.method), \(e.path), \(e.route), \(e.status), \(e.peer))
                    """)
            }
        }
    }

    public func audit(after seq: Int64, limit: Int) throws -> [AuditEntry] {
        try read("read the audit log") { session in
            try session.run("""
                SELECT seq, at, identity, token_id, role, method, path, route, status, peer FROM audit_log WHERE seq > \(seq) ORDER BY seq LIMIT \(limit)
                """).map { row in
                let (seq, at, identity, token, role, method, path, route, status, peer) =
                    try row.decode((Int64, Double, String, String, String, String, String, String, Int32, String).self)
                return AuditEntry(seq: seq, at: at, identity: identity, tokenId: token, role: role, method: method, path: path, route: route,
                                  status: Int(status), peer: peer)
            }
        }
    }

    public func insertNamespace(_ namespace: NamespaceRecord) throws -> Bool {
        // Only the leader writes (followers forward commands), so nothing comes in between.
        guard try !namespaces().contains(where: { $0.name == namespace.name }) else { return false }
        try write("insert namespace \(namespace.name)") { session in
            [session.send("""
                INSERT INTO namespaces (name, created_at, quota) VALUES (\(namespace.name), \(namespace.createdAt), \(try NamespaceQuota.stored(namespace.quota)))
                ON CONFLICT (name) DO NOTHING
                """)]
        }
        return true
    }

    public func namespaces() throws -> [NamespaceRecord] {
        try read("read namespaces") { session in
            try session.run("SELECT name, created_at, quota FROM namespaces ORDER BY name").map { row in
                let (name, created, quota) = try row.decode((String, Double, String?).self)
                return NamespaceRecord(name: name, createdAt: created, quota: try NamespaceQuota.fromStore(quota))
            }
        }
    }

    public func deleteNamespace(_ name: String) throws -> Bool {
        guard try namespaces().contains(where: { $0.name == name }) else { return false }
        try write("delete namespace \(name)") { session in [session.send("DELETE FROM namespaces WHERE name = \(name)")] }
        return true
    }

    public func setNamespaceQuota(_ name: String, _ quota: NamespaceQuota?, createdAt: Double) throws {
        let text = try NamespaceQuota.stored(quota)
        try write("set namespace \(name)'s quota") { session in
            [session.send("""
                INSERT INTO namespaces (name, created_at, quota) VALUES (\(name), \(createdAt), \(text))
                ON CONFLICT (name) DO UPDATE SET quota = excluded.quota
                """)]
        }
    }

    static let nonceSelect = "SELECT id, actor_id, level, max_uses, uses, expires_at, created_by, created_at FROM actor_nonces"

    static func nonce(_ row: PostgresRow) throws -> ActorNonce {
        let (id, actor, level, maxUses, uses, expires, by, created) =
            try row.decode((String, String, String, Int64?, Int64, Double?, String, Double).self)
        guard let parsed = ActorAccessLevel(rawValue: level) else { throw PropellerError(.internalError, "nonce \(id): unknown level \(level)") }
        return ActorNonce(id: id, actorId: actor, level: parsed, maxUses: maxUses.map(Int.init), uses: Int(uses), expiresAt: expires, createdBy: by, createdAt: created)
    }

    public func insertNonce(_ n: ActorNonce, sha256: String) throws {
        try write("insert nonce \(n.id)") { session in
            [session.send("""
                INSERT INTO actor_nonces (id, actor_id, sha256, level, max_uses, uses, expires_at, created_by, created_at)
                VALUES (\(n.id), \(n.actorId), \(sha256), \(n.level.rawValue), \(n.maxUses.map(Int64.init)), \(Int64(n.uses)), \(n.expiresAt), \(n.createdBy), \(n.createdAt))
                """)]
        }
    }

    public func nonce(sha256: String) throws -> ActorNonce? {
        try read("read a nonce") { session in
            try session.run("\(unescaped: Self.nonceSelect) WHERE sha256 = \(sha256)").first { _ in true }.map(Self.nonce)
        }
    }

    public func nonces(actorId: String) throws -> [ActorNonce] {
        try read("read nonces of \(actorId)") { session in
            try session.run("\(unescaped: Self.nonceSelect) WHERE actor_id = \(actorId) ORDER BY created_at, id").map(Self.nonce)
        }
    }

    public func useNonce(id: String) throws -> ActorNonce? {
        // One statement in its own (implicit) transaction: two requests racing for the last use
        // cannot both get it. A use count needs no leadership fence.
        try read("use nonce \(id)") { session in
            try session.run("""
                UPDATE actor_nonces SET uses = uses + 1 WHERE id = \(id) AND (max_uses IS NULL OR uses < max_uses)
                RETURNING id, actor_id, level, max_uses, uses, expires_at, created_by, created_at
                """).first { _ in true }.map(Self.nonce)
        }
    }

    public func deleteNonce(id: String, actorId: String) throws -> Bool {
        let there = try nonces(actorId: actorId).contains { $0.id == id }
        guard there else { return false }
        try write("delete nonce \(id)") { session in [session.send("DELETE FROM actor_nonces WHERE id = \(id) AND actor_id = \(actorId)")] }
        return true
    }

    static func grant(_ row: PostgresRow) throws -> ActorGrant {
        let (actor, identity, level, by, at) = try row.decode((String, String, String, String, Double).self)
        guard let parsed = ActorAccessLevel(rawValue: level) else { throw PropellerError(.internalError, "grant: unknown level \(level)") }
        return ActorGrant(actorId: actor, identity: identity, level: parsed, grantedBy: by, grantedAt: at)
    }

    public func setGrant(_ g: ActorGrant) throws {
        try write("grant \(g.identity) on \(g.actorId)") { session in
            [session.send("""
                INSERT INTO actor_grants (actor_id, identity, level, granted_by, granted_at) VALUES (\(g.actorId), \(g.identity), \(g.level.rawValue), \(g.grantedBy), \(g.grantedAt))
                ON CONFLICT (actor_id, identity) DO UPDATE SET level = excluded.level, granted_by = excluded.granted_by, granted_at = excluded.granted_at
                """)]
        }
    }

    public func grants(actorId: String) throws -> [ActorGrant] {
        try read("read grants of \(actorId)") { session in
            try session.run("SELECT actor_id, identity, level, granted_by, granted_at FROM actor_grants WHERE actor_id = \(actorId) ORDER BY identity").map(Self.grant)
        }
    }

    public func grant(actorId: String, identity: String) throws -> ActorGrant? {
        try read("read a grant of \(actorId)") { session in
            try session.run("""
                SELECT actor_id, identity, level, granted_by, granted_at FROM actor_grants WHERE actor_id = \(actorId) AND identity = \(identity)
                """).first { _ in true }.map(Self.grant)
        }
    }

    public func deleteGrant(actorId: String, identity: String) throws -> Bool {
        guard try grant(actorId: actorId, identity: identity) != nil else { return false }
        try write("revoke \(identity)'s grant on \(actorId)") { session in
            [session.send("DELETE FROM actor_grants WHERE actor_id = \(actorId) AND identity = \(identity)")]
        }
        return true
    }
}
