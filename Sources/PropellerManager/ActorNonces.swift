import PropellerCore

/// What a nonce (or, later, a grant) allows on one actor, as Abaco's levels: each includes the
/// ones before it.
public enum ActorAccessLevel: String, Codable, Sendable, CaseIterable, Comparable {
    /// The actor, its executions, logs, results, messages, state and workers.
    case read
    /// And posting messages.
    case execute
    /// And changing it (update, scale, state, cancel, delete).
    case update

    var rank: Int {
        switch self {
        case .read: 0
        case .execute: 1
        case .update: 2
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }

    /// The level a permission on an actor needs, or nil for one no level gives.
    public static func needed(for permission: Permission) -> ActorAccessLevel? {
        switch permission {
        case .actorsRead: .read
        case .actorsMessage: .execute
        case .actorsWrite: .update
        default: nil
        }
    }
}

/// A nonce as the API shows it: never its secret.
public struct ActorNonce: Codable, Sendable, Hashable {
    public var id: String
    public var actorId: String
    public var level: ActorAccessLevel
    /// How many requests it may make (nil: no limit until it expires).
    public var maxUses: Int?
    public var uses: Int
    public var expiresAt: Double?
    /// The identity that made it.
    public var createdBy: String
    public var createdAt: Double

    public init(id: String, actorId: String, level: ActorAccessLevel, maxUses: Int?, uses: Int = 0, expiresAt: Double?, createdBy: String, createdAt: Double) {
        self.id = id
        self.actorId = actorId
        self.level = level
        self.maxUses = maxUses
        self.uses = uses
        self.expiresAt = expiresAt
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// Where nonces live: their SHA-256, never the secret.
public protocol NonceStore: Sendable {
    func insertNonce(_ nonce: ActorNonce, sha256: String) throws
    func nonce(sha256: String) throws -> ActorNonce?
    func nonces(actorId: String) throws -> [ActorNonce]
    /// Counts one use unless it has none left; the nonce after, or nil when it had none left
    /// (or is gone).
    func useNonce(id: String) throws -> ActorNonce?
    func deleteNonce(id: String, actorId: String) throws -> Bool
}

/// Abaco's nonces: a capability bound to one actor and one level, with a use count and an
/// expiry, that an outside system presents as `?x-nonce=` instead of a token.
public struct ActorNonces: Sendable {
    public static let prefix = "pnc_"
    let store: any NonceStore

    public init(store: any NonceStore) { self.store = store }

    public func create(actorId: String, level: ActorAccessLevel, maxUses: Int?, expiresAt: Double?, by identity: String) throws -> (ActorNonce, String) {
        let secret = Self.prefix + SecureRandom.bytes(32).hexString
        let nonce = ActorNonce(id: "non-" + SecureRandom.bytes(6).hexString, actorId: actorId, level: level, maxUses: maxUses,
                               expiresAt: expiresAt, createdBy: identity, createdAt: WallClock.now())
        try store.insertNonce(nonce, sha256: APITokens.hash(secret))
        return (nonce, secret)
    }

    /// The nonce `presented` is, when it exists, has uses left and has not expired.
    public func find(_ presented: String, now: Double = WallClock.now()) throws -> ActorNonce? {
        guard presented.hasPrefix(Self.prefix), presented.utf8.count <= 128 else { return nil }
        guard let nonce = try store.nonce(sha256: APITokens.hash(presented)) else { return nil }
        if let expires = nonce.expiresAt, expires <= now { return nil }
        if let max = nonce.maxUses, nonce.uses >= max { return nil }
        return nonce
    }

    /// Spends one use: false when another request took the last.
    public func use(_ nonce: ActorNonce) throws -> Bool { try store.useNonce(id: nonce.id) != nil }

    public func list(actorId: String) throws -> [ActorNonce] { try store.nonces(actorId: actorId) }

    public func delete(id: String, actorId: String) throws -> Bool { try store.deleteNonce(id: id, actorId: actorId) }
}

/// An identity's access to one actor beyond what its role gives (Abaco's actor permissions).
public struct ActorGrant: Codable, Sendable, Hashable {
    public var actorId: String
    public var identity: String
    public var level: ActorAccessLevel
    public var grantedBy: String
    public var grantedAt: Double

    public init(actorId: String, identity: String, level: ActorAccessLevel, grantedBy: String, grantedAt: Double) {
        self.actorId = actorId
        self.identity = identity
        self.level = level
        self.grantedBy = grantedBy
        self.grantedAt = grantedAt
    }
}

/// Where grants live (removed with their actor).
public protocol GrantStore: Sendable {
    /// Adds or replaces `grant` (one per actor and identity).
    func setGrant(_ grant: ActorGrant) throws
    func grants(actorId: String) throws -> [ActorGrant]
    func grant(actorId: String, identity: String) throws -> ActorGrant?
    func deleteGrant(actorId: String, identity: String) throws -> Bool
}
