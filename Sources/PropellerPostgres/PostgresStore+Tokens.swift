import PostgresNIO
import PropellerManager

extension PostgresStore {
    public func insertToken(_ token: APIToken, sha256: String) throws {
        try write("insert API token \(token.id)") { session in
            [session.send("""
                INSERT INTO api_tokens (id, name, sha256, created_at, revoked_at) VALUES (\(token.id), \(token.name), \(sha256), \(token.createdAt), \(token.revokedAt))
                ON CONFLICT (sha256) DO NOTHING
                """)]
        }
    }

    public func tokens() throws -> [(token: APIToken, sha256: String)] {
        try read("read API tokens") { session in
            try session.run("SELECT id, name, sha256, created_at, revoked_at FROM api_tokens ORDER BY created_at, id").map { row in
                let (id, name, sha, created, revoked) = try row.decode((String, String, String, Double, Double?).self)
                return (APIToken(id: id, name: name, createdAt: created, revokedAt: revoked), sha)
            }
        }
    }

    public func revokeToken(id: String, at time: Double) throws -> APIToken? {
        try write("revoke API token \(id)") { session in
            [session.send("UPDATE api_tokens SET revoked_at = \(time) WHERE id = \(id) AND revoked_at IS NULL")]
        }
        return try read("read API token \(id)") { session in
            try session.run("SELECT id, name, created_at, revoked_at FROM api_tokens WHERE id = \(id)").first { _ in true }.map { row in
                let (id, name, created, revoked) = try row.decode((String, String, Double, Double?).self)
                return APIToken(id: id, name: name, createdAt: created, revokedAt: revoked)
            }
        }
    }
}
