import Foundation
import GRDB
import PropellerCore

extension SQLiteStore: PropletIdentityStore {
    /// Proplet identities made through the API (their secrets live on the broker only).
    static func registerPropletIdentityMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v6-proplet-identities") { db in
            try db.execute(sql: """
            CREATE TABLE proplet_identities (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at REAL NOT NULL,
                revoked_at REAL,
                revoked_by TEXT
            );
            """)
        }
        // A namespace's list (`task list -n team-a`) and its count read this index, not every task's spec.
        m.registerMigration("v7-task-namespace-index") { db in
            try db.execute(sql: "CREATE INDEX tasks_namespace ON tasks(COALESCE(json_extract(spec, '$.namespace'), 'default'), seq)")
        }
    }

    /// A proplet identity held to some namespaces (JSON list; NULL: any). After the retention
    /// migration: migrations run in the order they are registered.
    static func registerIdentityNamespacesMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v9-proplet-identity-namespaces") { db in
            try db.execute(sql: "ALTER TABLE proplet_identities ADD COLUMN namespaces TEXT")
        }
    }

    static let identityColumns = "id, name, created_by, created_at, revoked_at, revoked_by, namespaces"

    static func identity(_ row: Row) -> PropletIdentity {
        let namespaces = (row["namespaces"] as String?).flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }
        return PropletIdentity(id: row["id"], name: row["name"], createdBy: row["created_by"], createdAt: row["created_at"],
                               revokedAt: row["revoked_at"], revokedBy: row["revoked_by"], namespaces: namespaces)
    }

    /// A list of namespaces as the store keeps it (JSON), or nil.
    static func stored(_ namespaces: [String]?) -> String? {
        namespaces.flatMap { try? JSONEncoder().encode($0) }.map { String(decoding: $0, as: UTF8.self) }
    }

    public func insertPropletIdentity(_ i: PropletIdentity) throws {
        try wrap("insert proplet identity \(i.id)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO proplet_identities (\(Self.identityColumns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [i.id, i.name, i.createdBy, i.createdAt, i.revokedAt, i.revokedBy, Self.stored(i.namespaces)])
            }
        }
    }

    public func propletIdentities() throws -> [PropletIdentity] {
        try wrap("read proplet identities") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT \(Self.identityColumns) FROM proplet_identities ORDER BY created_at, id").map(Self.identity)
            }
        }
    }

    public func propletIdentity(id: String) throws -> PropletIdentity? {
        try wrap("read proplet identity \(id)") {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT \(Self.identityColumns) FROM proplet_identities WHERE id = ?", arguments: [id]).map(Self.identity)
            }
        }
    }

    public func revokePropletIdentity(id: String, by: String, at: Double) throws -> Bool {
        try wrap("revoke proplet identity \(id)") {
            try pool.write { db in
                try db.execute(sql: "UPDATE proplet_identities SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL", arguments: [at, by, id])
                return db.changesCount > 0
            }
        }
    }
}
