import Foundation
import PostgresNIO
import PropellerCore
import PropellerManager

/// Leadership of several managers that share one PostgreSQL database: a lease row with a
/// fencing epoch.
///
/// The lease is held by renewing it before it expires (the database's clock decides expiry, so
/// the managers' clocks need not agree). Taking over an expired lease, or one's own expired
/// lease, raises the epoch; the store checks the epoch in every write transaction
/// (``PostgresStore/fence(epoch:)``), so a deposed leader's late writes are refused by the
/// database, and the takeover waits for writes in flight. A leader that has not renewed within
/// its lease's duration, by its own monotonic clock, must stop deciding: another may lead.
public final class PostgresLeadership: Leadership {
    let store: PostgresStore
    public let id: String
    public let address: String
    public let duration: Duration

    /// `id` names this manager (unique among those sharing the database); `address` is where its
    /// API is served; `duration` is how long a lease lasts without renewal.
    public init(store: PostgresStore, id: String, address: String, duration: Duration) {
        self.store = store
        self.id = id
        self.address = address
        self.duration = duration
    }

    private var milliseconds: Int64 { duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000 }

    public func acquire(renewing: Int64?) throws -> Int64? {
        if let epoch = renewing {
            return try store.read("renew the leadership lease") { session in
                try session.run("""
                    UPDATE leadership SET expires_at = now() + \(milliseconds) * interval '1 millisecond'
                    WHERE id = 1 AND holder = \(id) AND epoch = \(epoch) RETURNING epoch
                    """).first { _ in true }.map { try $0.decode(Int64.self) }
            }
        }
        return try store.read("take the leadership lease") { session in
            try session.run("""
                INSERT INTO leadership (id, epoch, holder, address, expires_at)
                VALUES (1, 1, \(id), \(address), now() + \(milliseconds) * interval '1 millisecond')
                ON CONFLICT (id) DO UPDATE SET epoch = leadership.epoch + 1, holder = excluded.holder, address = excluded.address,
                    expires_at = excluded.expires_at
                WHERE leadership.holder = excluded.holder OR leadership.expires_at < now()
                RETURNING epoch
                """).first { _ in true }.map { try $0.decode(Int64.self) }
        }
    }

    public func fence(epoch: Int64?) { store.fence(epoch: epoch) }

    /// Gives the lease up (a clean shutdown): another manager may take it at once, under a new
    /// epoch.
    public func release(epoch: Int64) throws {
        try store.read("release the leadership lease") { session in
            try session.run("UPDATE leadership SET expires_at = now() - interval '1 second' WHERE id = 1 AND holder = \(id) AND epoch = \(epoch)")
        }
    }

    /// The lease as it stands; nil when no manager has ever led.
    public func leader() throws -> LeaderInfo? {
        try store.read("read the leadership lease") { session in
            try session.run("SELECT epoch, holder, address, EXTRACT(EPOCH FROM expires_at - now())::float8 FROM leadership WHERE id = 1").first { _ in true }.map { row in
                let (epoch, holder, address, expiresIn) = try row.decode((Int64, String, String, Double).self)
                return LeaderInfo(id: holder, address: address, epoch: epoch, expiresIn: expiresIn)
            }
        }
    }

    /// Says that this manager is alive and where it serves (for `propeller manager status`).
    public func announce() throws {
        try store.read("announce this manager") { session in
            try session.run("""
                INSERT INTO managers (id, address, seen_at) VALUES (\(id), \(address), now())
                ON CONFLICT (id) DO UPDATE SET address = excluded.address, seen_at = excluded.seen_at
                """)
        }
    }

    /// The managers seen within `within`, most recent first.
    public func members(within: Duration) throws -> [ManagerMember] {
        let ms = within.components.seconds * 1000 + within.components.attoseconds / 1_000_000_000_000_000
        return try store.read("list the managers") { session in
            try session.run("""
                SELECT id, address, EXTRACT(EPOCH FROM now() - seen_at)::float8 FROM managers
                WHERE seen_at > now() - \(ms) * interval '1 millisecond' ORDER BY seen_at DESC, id
                """).map { row in
                let (id, address, ago) = try row.decode((String, String, Double).self)
                return ManagerMember(id: id, address: address, seenAgo: ago)
            }
        }
    }
}
