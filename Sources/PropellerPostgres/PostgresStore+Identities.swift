import Foundation
import PostgresNIO
import PropellerCore
import PropellerManager

extension PostgresStore: PropletIdentityStore {
    static let identitySelect = "SELECT id, name, created_by, created_at, revoked_at, revoked_by, namespaces FROM proplet_identities"

    static func identity(_ row: PostgresRow) throws -> PropletIdentity {
        let (id, name, by, at, revokedAt, revokedBy, namespaces) = try row.decode((String, String, String, Double, Double?, String?, String?).self)
        return PropletIdentity(id: id, name: name, createdBy: by, createdAt: at, revokedAt: revokedAt, revokedBy: revokedBy,
                               namespaces: namespaces.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) })
    }

    public func insertPropletIdentity(_ i: PropletIdentity) throws {
        try write("insert proplet identity \(i.id)") { session in
            [session.send("""
                INSERT INTO proplet_identities (id, name, created_by, created_at, revoked_at, revoked_by, namespaces)
                VALUES (\(i.id), \(i.name), \(i.createdBy), \(i.createdAt), \(i.revokedAt), \(i.revokedBy),
                        \(i.namespaces.flatMap { try? JSONEncoder().encode($0) }.map { String(decoding: $0, as: UTF8.self) }))
                """)]
        }
    }

    public func propletIdentities() throws -> [PropletIdentity] {
        try read("read proplet identities") { session in
            try session.run("\(unescaped: Self.identitySelect) ORDER BY created_at, id").map(Self.identity)
        }
    }

    public func propletIdentity(id: String) throws -> PropletIdentity? {
        try read("read proplet identity \(id)") { session in
            try session.run("\(unescaped: Self.identitySelect) WHERE id = \(id)").first { _ in true }.map(Self.identity)
        }
    }

    public func revokePropletIdentity(id: String, by: String, at: Double) throws -> Bool {
        guard let current = try propletIdentity(id: id), current.revokedAt == nil else { return false }
        try write("revoke proplet identity \(id)") { session in
            [session.send("UPDATE proplet_identities SET revoked_at = \(at), revoked_by = \(by) WHERE id = \(id) AND revoked_at IS NULL")]
        }
        return true
    }
}
