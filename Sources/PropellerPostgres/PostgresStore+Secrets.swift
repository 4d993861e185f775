import NIOCore
import PostgresNIO
import PropellerManager

extension PostgresStore: SecretStore {
    public func insertSecret(_ info: SecretInfo, sealed: [UInt8]) throws -> Bool {
        // Only the leader writes (followers forward commands), so nothing comes in between.
        guard try sealedSecret(info.name) == nil else { return false }
        try write("insert secret \(info.name)") { session in
            [session.send("""
                INSERT INTO secrets (name, sealed, size_bytes, created_at) VALUES (\(info.name), \(ByteBuffer(bytes: sealed)), \(Int64(info.sizeBytes)), \(info.createdAt))
                ON CONFLICT (name) DO NOTHING
                """)]
        }
        return true
    }

    public func secrets() throws -> [SecretInfo] {
        try read("read secrets") { session in
            try session.run("SELECT name, size_bytes, created_at FROM secrets ORDER BY name").map { row in
                let (name, size, created) = try row.decode((String, Int64, Double).self)
                return SecretInfo(name: name, sizeBytes: Int(size), createdAt: created)
            }
        }
    }

    public func sealedSecret(_ name: String) throws -> [UInt8]? {
        try read("read secret \(name)") { session in
            try session.run("SELECT sealed FROM secrets WHERE name = \(name)").first { _ in true }.map { row in
                var buffer = try row.decode(ByteBuffer.self)
                return buffer.readBytes(length: buffer.readableBytes) ?? []
            }
        }
    }

    public func deleteSecret(_ name: String) throws -> Bool {
        guard try sealedSecret(name) != nil else { return false }
        try write("delete secret \(name)") { session in [session.send("DELETE FROM secrets WHERE name = \(name)")] }
        return true
    }
}
