import GRDB
import PropellerCore

/// Where API tokens live: only their SHA-256, never the token itself.
public protocol TokenStore: Sendable {
    /// Adds a token unless one with the same hash exists (a revoked one stays revoked).
    func insertToken(_ token: APIToken, sha256: String) throws
    func tokens() throws -> [(token: APIToken, sha256: String)]
    /// Marks a token revoked; nil when there is no such token.
    func revokeToken(id: String, at: Double) throws -> APIToken?
}

extension SQLiteStore: TokenStore {
    public func insertToken(_ token: APIToken, sha256: String) throws {
        try wrap("insert API token \(token.id)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO api_tokens (id, name, sha256, created_at, revoked_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING",
                               arguments: [token.id, token.name, sha256, token.createdAt, token.revokedAt])
            }
        }
    }

    public func tokens() throws -> [(token: APIToken, sha256: String)] {
        try wrap("read API tokens") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT id, name, sha256, created_at, revoked_at FROM api_tokens ORDER BY created_at, id").map { row in
                    (APIToken(id: row["id"], name: row["name"], createdAt: row["created_at"], revokedAt: row["revoked_at"]), row["sha256"])
                }
            }
        }
    }

    public func revokeToken(id: String, at time: Double) throws -> APIToken? {
        try wrap("revoke API token \(id)") {
            try pool.write { db in
                try db.execute(sql: "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [time, id])
                return try Row.fetchOne(db, sql: "SELECT id, name, created_at, revoked_at FROM api_tokens WHERE id = ?", arguments: [id]).map { row in
                    APIToken(id: row["id"], name: row["name"], createdAt: row["created_at"], revokedAt: row["revoked_at"])
                }
            }
        }
    }
}
