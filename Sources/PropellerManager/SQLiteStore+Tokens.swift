import Foundation
import GRDB
import PropellerCore

/// Where API tokens live: only their SHA-256, never the token itself.
public protocol TokenStore: Sendable {
    /// Adds a token unless one with the same hash exists (a revoked one stays revoked).
    func insertToken(_ token: APIToken, sha256: String) throws
    func tokens() throws -> [(token: APIToken, sha256: String)]
    /// Marks a token revoked; nil when there is no such token.
    func revokeToken(id: String, at: Double) throws -> APIToken?
    /// Gives an unrevoked token a new hash; nil when there is no such token.
    func rotateToken(id: String, sha256: String, at: Double) throws -> APIToken?
    /// Forgets tokens made through the API that were revoked, or expired, before `before`
    /// (retention); a configured token's record, which keeps it revoked, stays. Returns them.
    func pruneTokens(endedBefore before: Double) throws -> [APIToken]
}

extension SQLiteStore: TokenStore, AuditStore, NamespaceStore, NonceStore, GrantStore {
    /// Roles, identities and expiry on tokens (those made before are admins, as they could do
    /// everything), and the audit log.
    static func registerAccessMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v5-access") { db in
            try db.execute(sql: """
            ALTER TABLE api_tokens ADD COLUMN identity TEXT;
            ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
            ALTER TABLE api_tokens ADD COLUMN expires_at REAL;
            ALTER TABLE api_tokens ADD COLUMN rotated_at REAL;
            ALTER TABLE api_tokens ADD COLUMN namespace TEXT;
            CREATE TABLE namespaces (
                name TEXT PRIMARY KEY,
                created_at REAL NOT NULL,
                quota TEXT
            );
            CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                identity TEXT NOT NULL,
                token_id TEXT NOT NULL,
                role TEXT NOT NULL,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                route TEXT NOT NULL,
                status INTEGER NOT NULL,
                peer TEXT NOT NULL
            );
            CREATE TABLE actor_nonces (
                id TEXT PRIMARY KEY,
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                sha256 TEXT NOT NULL UNIQUE,
                level TEXT NOT NULL,
                max_uses INTEGER,
                uses INTEGER NOT NULL DEFAULT 0,
                expires_at REAL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL
            );
            CREATE INDEX actor_nonces_actor ON actor_nonces(actor_id);
            CREATE TABLE actor_grants (
                actor_id TEXT NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
                identity TEXT NOT NULL,
                level TEXT NOT NULL,
                granted_by TEXT NOT NULL,
                granted_at REAL NOT NULL,
                PRIMARY KEY (actor_id, identity)
            );
            CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
            CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
            """)
        }
    }

    /// Retention: an entry may be deleted once a recorded prune (itself append-only) covers it.
    static func registerRetentionMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v8-audit-retention") { db in
            try db.execute(sql: """
            CREATE TABLE audit_prunes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                before REAL NOT NULL,
                at REAL NOT NULL
            );
            CREATE TRIGGER audit_prunes_append_only_update BEFORE UPDATE ON audit_prunes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
            CREATE TRIGGER audit_prunes_append_only_delete BEFORE DELETE ON audit_prunes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
            DROP TRIGGER audit_log_append_only_delete;
            CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
                WHEN OLD.at >= COALESCE((SELECT MAX(before) FROM audit_prunes), 0)
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only (only entries older than a recorded prune may go)'); END;
            """)
        }
    }

    public func pruneAudit(before: Double, at now: Double) throws -> Int {
        try wrap("prune the audit log before \(before)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO audit_prunes (before, at) VALUES (?, ?)", arguments: [before, now])
                try db.execute(sql: "DELETE FROM audit_log WHERE at < ?", arguments: [before])
                return db.changesCount
            }
        }
    }

    public func pruneTokens(endedBefore before: Double) throws -> [APIToken] {
        try wrap("prune API tokens ended before \(before)") {
            try pool.write { db in
                let condition = "created_at > 0 AND ((revoked_at IS NOT NULL AND revoked_at < ?) OR (expires_at IS NOT NULL AND expires_at < ?))"
                let gone = try Row.fetchAll(db, sql: "SELECT \(Self.tokenColumns) FROM api_tokens WHERE \(condition)", arguments: [before, before]).map(Self.token)
                try db.execute(sql: "DELETE FROM api_tokens WHERE \(condition)", arguments: [before, before])
                return gone
            }
        }
    }

    static let tokenColumns = "id, name, identity, role, namespace, created_at, expires_at, rotated_at, revoked_at"

    static func token(_ row: Row) throws -> APIToken {
        let role: String = row["role"]
        guard let parsed = Role(rawValue: role) else { throw PropellerError(.internalError, "API token \(row["id"] as String? ?? "?"): unknown role \(role)") }
        return APIToken(id: row["id"], name: row["name"], identity: row["identity"], role: parsed, namespace: row["namespace"], createdAt: row["created_at"],
                        expiresAt: row["expires_at"], rotatedAt: row["rotated_at"], revokedAt: row["revoked_at"])
    }

    public func insertToken(_ token: APIToken, sha256: String) throws {
        try wrap("insert API token \(token.id)") {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO api_tokens (id, name, identity, role, namespace, sha256, created_at, expires_at, rotated_at, revoked_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING
                    """,
                    arguments: [token.id, token.name, token.identity, token.role.rawValue, token.namespace, sha256, token.createdAt, token.expiresAt,
                                token.rotatedAt, token.revokedAt])
            }
        }
    }

    public func tokens() throws -> [(token: APIToken, sha256: String)] {
        try wrap("read API tokens") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT \(Self.tokenColumns), sha256 FROM api_tokens ORDER BY created_at, id").map { row in
                    (try Self.token(row), row["sha256"])
                }
            }
        }
    }

    public func revokeToken(id: String, at time: Double) throws -> APIToken? {
        try wrap("revoke API token \(id)") {
            try pool.write { db in
                try db.execute(sql: "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [time, id])
                return try Row.fetchOne(db, sql: "SELECT \(Self.tokenColumns) FROM api_tokens WHERE id = ?", arguments: [id]).map(Self.token)
            }
        }
    }

    public func rotateToken(id: String, sha256: String, at time: Double) throws -> APIToken? {
        try wrap("rotate API token \(id)") {
            try pool.write { db in
                try db.execute(sql: "UPDATE api_tokens SET sha256 = ?, rotated_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [sha256, time, id])
                guard db.changesCount == 1 else { return nil }
                return try Row.fetchOne(db, sql: "SELECT \(Self.tokenColumns) FROM api_tokens WHERE id = ?", arguments: [id]).map(Self.token)
            }
        }
    }

    public func appendAudit(_ entries: [AuditEntry]) throws {
        try wrap("append \(entries.count) audit entries") {
            try pool.write { db in
                let statement = try db.cachedStatement(sql: """
                    INSERT INTO audit_log (at, identity, token_id, role, method, path, route, status, peer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                for e in entries {
                    try statement.execute(arguments: [e.at, e.identity, e.tokenId, e.role, e.method, e.path, e.route, e.status, e.peer])
                }
            }
        }
    }

    public func audit(after seq: Int64, limit: Int) throws -> [AuditEntry] {
        try wrap("read the audit log") {
            try pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT seq, at, identity, token_id, role, method, path, route, status, peer FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?
                    """, arguments: [seq, limit]).map { row in
                    AuditEntry(seq: row["seq"], at: row["at"], identity: row["identity"], tokenId: row["token_id"], role: row["role"],
                               method: row["method"], path: row["path"], route: row["route"], status: row["status"], peer: row["peer"])
                }
            }
        }
    }

    public func insertNamespace(_ namespace: NamespaceRecord) throws -> Bool {
        try wrap("insert namespace \(namespace.name)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO namespaces (name, created_at, quota) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
                               arguments: [namespace.name, namespace.createdAt, try NamespaceQuota.stored(namespace.quota)])
                return db.changesCount == 1
            }
        }
    }

    public func namespaces() throws -> [NamespaceRecord] {
        try wrap("read namespaces") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT name, created_at, quota FROM namespaces ORDER BY name").map { row in
                    NamespaceRecord(name: row["name"], createdAt: row["created_at"], quota: try NamespaceQuota.fromStore(row["quota"]))
                }
            }
        }
    }

    public func deleteNamespace(_ name: String) throws -> Bool {
        try wrap("delete namespace \(name)") {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM namespaces WHERE name = ?", arguments: [name])
                return db.changesCount == 1
            }
        }
    }

    public func setNamespaceQuota(_ name: String, _ quota: NamespaceQuota?, createdAt: Double) throws {
        try wrap("set namespace \(name)'s quota") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO namespaces (name, created_at, quota) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET quota = excluded.quota",
                               arguments: [name, createdAt, try NamespaceQuota.stored(quota)])
            }
        }
    }

    static let nonceColumns = "id, actor_id, level, max_uses, uses, expires_at, created_by, created_at"

    static func nonce(_ row: Row) throws -> ActorNonce {
        let level: String = row["level"]
        guard let parsed = ActorAccessLevel(rawValue: level) else { throw PropellerError(.internalError, "nonce: unknown level \(level)") }
        return ActorNonce(id: row["id"], actorId: row["actor_id"], level: parsed, maxUses: row["max_uses"], uses: row["uses"],
                          expiresAt: row["expires_at"], createdBy: row["created_by"], createdAt: row["created_at"])
    }

    public func insertNonce(_ n: ActorNonce, sha256: String) throws {
        try wrap("insert nonce \(n.id)") {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO actor_nonces (id, actor_id, sha256, level, max_uses, uses, expires_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [n.id, n.actorId, sha256, n.level.rawValue, n.maxUses, n.uses, n.expiresAt, n.createdBy, n.createdAt])
            }
        }
    }

    public func nonce(sha256: String) throws -> ActorNonce? {
        try wrap("read a nonce") {
            try pool.read { db in try Row.fetchOne(db, sql: "SELECT \(Self.nonceColumns) FROM actor_nonces WHERE sha256 = ?", arguments: [sha256]).map(Self.nonce) }
        }
    }

    public func nonces(actorId: String) throws -> [ActorNonce] {
        try wrap("read nonces of \(actorId)") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT \(Self.nonceColumns) FROM actor_nonces WHERE actor_id = ? ORDER BY created_at, id", arguments: [actorId]).map(Self.nonce)
            }
        }
    }

    public func useNonce(id: String) throws -> ActorNonce? {
        try wrap("use nonce \(id)") {
            try pool.write { db in
                try db.execute(sql: "UPDATE actor_nonces SET uses = uses + 1 WHERE id = ? AND (max_uses IS NULL OR uses < max_uses)", arguments: [id])
                guard db.changesCount == 1 else { return nil }
                return try Row.fetchOne(db, sql: "SELECT \(Self.nonceColumns) FROM actor_nonces WHERE id = ?", arguments: [id]).map(Self.nonce)
            }
        }
    }

    public func deleteNonce(id: String, actorId: String) throws -> Bool {
        try wrap("delete nonce \(id)") {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM actor_nonces WHERE id = ? AND actor_id = ?", arguments: [id, actorId])
                return db.changesCount == 1
            }
        }
    }

    static func grant(_ row: Row) throws -> ActorGrant {
        let level: String = row["level"]
        guard let parsed = ActorAccessLevel(rawValue: level) else { throw PropellerError(.internalError, "grant: unknown level \(level)") }
        return ActorGrant(actorId: row["actor_id"], identity: row["identity"], level: parsed, grantedBy: row["granted_by"], grantedAt: row["granted_at"])
    }

    public func setGrant(_ g: ActorGrant) throws {
        try wrap("grant \(g.identity) on \(g.actorId)") {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO actor_grants (actor_id, identity, level, granted_by, granted_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(actor_id, identity) DO UPDATE SET level = excluded.level, granted_by = excluded.granted_by, granted_at = excluded.granted_at
                    """, arguments: [g.actorId, g.identity, g.level.rawValue, g.grantedBy, g.grantedAt])
            }
        }
    }

    public func grants(actorId: String) throws -> [ActorGrant] {
        try wrap("read grants of \(actorId)") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT actor_id, identity, level, granted_by, granted_at FROM actor_grants WHERE actor_id = ? ORDER BY identity",
                                 arguments: [actorId]).map(Self.grant)
            }
        }
    }

    public func grant(actorId: String, identity: String) throws -> ActorGrant? {
        try wrap("read a grant of \(actorId)") {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT actor_id, identity, level, granted_by, granted_at FROM actor_grants WHERE actor_id = ? AND identity = ?",
                                 arguments: [actorId, identity]).map(Self.grant)
            }
        }
    }

    public func deleteGrant(actorId: String, identity: String) throws -> Bool {
        try wrap("revoke \(identity)'s grant on \(actorId)") {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM actor_grants WHERE actor_id = ? AND identity = ?", arguments: [actorId, identity])
                return db.changesCount == 1
            }
        }
    }
}
