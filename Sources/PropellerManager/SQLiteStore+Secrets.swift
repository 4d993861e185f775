import Foundation
import GRDB
import PropellerCore

/// A secret as the API shows it: its name, size and time, never its value.
public struct SecretInfo: Codable, Sendable, Hashable {
    public var name: String
    public var sizeBytes: Int
    public var createdAt: Double
    /// Where it belongs (nil: as stored, before the vault reads it).
    public var namespace: String?

    public init(name: String, sizeBytes: Int, createdAt: Double, namespace: String? = nil) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.createdAt = createdAt
        self.namespace = namespace
    }
}

/// Where secrets live: sealed by ``SecretBox`` (the store never sees a value).
public protocol SecretStore: Sendable {
    /// Adds a secret; false when one of that name exists (it stays as it was).
    func insertSecret(_ info: SecretInfo, sealed: [UInt8]) throws -> Bool
    func secrets() throws -> [SecretInfo]
    func sealedSecret(_ name: String) throws -> [UInt8]?
    /// Removes a secret; false when there was none.
    func deleteSecret(_ name: String) throws -> Bool
}

extension SQLiteStore: SecretStore {
    static func registerSecretMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v4-secrets") { db in
            try db.execute(sql: """
            CREATE TABLE secrets (
                name TEXT PRIMARY KEY,
                sealed BLOB NOT NULL,
                size_bytes INTEGER NOT NULL,
                created_at REAL NOT NULL
            );
            """)
        }
    }

    public func insertSecret(_ info: SecretInfo, sealed: [UInt8]) throws -> Bool {
        try wrap("insert secret \(info.name)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO secrets (name, sealed, size_bytes, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
                               arguments: [info.name, Data(sealed), info.sizeBytes, info.createdAt])
                return db.changesCount == 1
            }
        }
    }

    public func secrets() throws -> [SecretInfo] {
        try wrap("read secrets") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT name, size_bytes, created_at FROM secrets ORDER BY name").map { row in
                    SecretInfo(name: row["name"], sizeBytes: row["size_bytes"], createdAt: row["created_at"])
                }
            }
        }
    }

    public func sealedSecret(_ name: String) throws -> [UInt8]? {
        try wrap("read secret \(name)") {
            try pool.read { db in
                try Data.fetchOne(db, sql: "SELECT sealed FROM secrets WHERE name = ?", arguments: [name]).map { [UInt8]($0) }
            }
        }
    }

    public func deleteSecret(_ name: String) throws -> Bool {
        try wrap("delete secret \(name)") {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM secrets WHERE name = ?", arguments: [name])
                return db.changesCount == 1
            }
        }
    }
}
