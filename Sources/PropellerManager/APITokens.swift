import PropellerCore

/// An API token as the manager shows it: never the secret, which exists only in the answer
/// that created (or rotated) it.
public struct APIToken: Codable, Sendable, Hashable {
    public var id: String
    public var name: String
    /// The user or service it belongs to (its name when none was given).
    public var identity: String
    /// What it may do. Tokens from before roles existed, and configured ones, are admins.
    public var role: Role
    /// The namespace its role is bound to; nil: every namespace, and the cluster's own
    /// resources (proplets, tokens, namespaces, the audit log).
    public var namespace: String?
    public var createdAt: Double
    /// After this it is refused (nil: never).
    public var expiresAt: Double?
    /// When its secret was last replaced.
    public var rotatedAt: Double?
    public var revokedAt: Double?

    public init(id: String, name: String, identity: String? = nil, role: Role = .admin, namespace: String? = nil, createdAt: Double,
                expiresAt: Double? = nil, rotatedAt: Double? = nil, revokedAt: Double? = nil) {
        self.id = id
        self.name = name
        self.identity = identity ?? name
        self.role = role
        self.namespace = namespace
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.rotatedAt = rotatedAt
        self.revokedAt = revokedAt
    }

    public var principal: Principal { Principal(tokenID: id, identity: identity, role: role, namespace: namespace) }
}

/// The manager's bearer tokens: kept as SHA-256 hashes (tokens are 256 random bits, so a plain
/// hash is as good as a slow one and a leaked database or config file holds no usable secret),
/// checked by hashing the presented token and looking the hash up, revocable at once.
///
/// Two kinds: tokens made through the API (`POST /tokens`, stored in the database) and tokens
/// named in the manager's configuration (`api-token-sha256`, valid while they are there). Revoking
/// a configured token records its hash as revoked, so a restart does not bring it back.
public final class APITokens: Sendable {
    /// A new token's shape: `ptk_` and 64 hex digits.
    public static let prefix = "ptk_"

    struct State {
        /// Hash → token, for the tokens that are not revoked (expired ones are refused when
        /// presented, with the reason).
        var active: [String: APIToken] = [:]
        /// Configured tokens: id → (token, hash).
        var configured: [String: (token: APIToken, sha256: String)] = [:]
    }

    let store: any TokenStore
    private let state: Locked<State>

    public init(store: any TokenStore, configured: [(name: String, sha256: String)] = []) throws {
        self.store = store
        let stored = try store.tokens()
        let revoked = Set(stored.filter { $0.token.revokedAt != nil }.map(\.sha256))
        var state = State()
        for (token, hash) in stored where token.revokedAt == nil { state.active[hash] = token }
        for (i, c) in configured.enumerated() {
            let hash = try Self.parseHash(c.sha256, what: "api-token-sha256 #\(i + 1)")
            let id = "cfg-" + hash.prefix(12)
            let revokedAt = stored.first { $0.sha256 == hash }?.token.revokedAt
            let token = APIToken(id: id, name: c.name, role: .admin, createdAt: 0, revokedAt: revokedAt)
            state.configured[id] = (token, hash)
            if !revoked.contains(hash) { state.active[hash] = token }
        }
        self.state = Locked(state)
    }

    /// `sha256:HEX` or `HEX` (64 digits) → lowercase hex.
    public static func parseHash(_ text: String, what: String) throws -> String {
        let hex = (text.lowercased().hasPrefix("sha256:") ? String(text.dropFirst(7)) : text).lowercased()
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { throw PropellerError(.invalidArgument, "\(what): expected sha256: and 64 hex digits") }
        return hex
    }

    /// The SHA-256 of `token`, in hex: what the store and `api-token-sha256` hold.
    public static func hash(_ token: String) -> String { SHA256.hash(Array(token.utf8)).hexString }

    /// Why a presented token is refused.
    public enum Refusal: Error, Sendable, Equatable {
        case unknown
        case expired(at: Double)
    }

    /// The token `presented` is, unless it is unknown, revoked or expired.
    public func authenticate(_ presented: String, now: Double = WallClock.now()) -> Result<APIToken, Refusal> {
        guard !presented.isEmpty, presented.utf8.count <= 256 else { return .failure(.unknown) }
        let hash = Self.hash(presented)
        guard let token = state.withLock({ $0.active[hash] }) else { return .failure(.unknown) }
        if let expires = token.expiresAt, expires <= now { return .failure(.expired(at: expires)) }
        return .success(token)
    }

    /// Makes a token; its secret is returned once and kept nowhere.
    public func create(name: String, identity: String? = nil, role: Role, namespace: String? = nil,
                       expiresAt: Double? = nil) throws -> (token: APIToken, secret: String) {
        let secret = Self.newSecret()
        let hash = Self.hash(secret)
        let token = APIToken(id: "tok-" + SecureRandom.bytes(6).hexString, name: name, identity: identity, role: role, namespace: namespace,
                             createdAt: WallClock.now(), expiresAt: expiresAt)
        try store.insertToken(token, sha256: hash)
        state.withLock { $0.active[hash] = token }
        return (token, secret)
    }

    static func newSecret() -> String { prefix + SecureRandom.bytes(32).hexString }

    /// Replaces token `id`'s secret: the old one stops working at once, the token keeps its id,
    /// role and expiry. Nil when there is no such (unrevoked) token; configured tokens live in
    /// the configuration and are refused.
    public func rotate(id: String) throws -> (token: APIToken, secret: String)? {
        if state.withLock({ $0.configured[id] != nil }) {
            throw APIError.conflict("token \(id) comes from the manager's configuration (api-token-sha256): replace it there")
        }
        let secret = Self.newSecret()
        let hash = Self.hash(secret)
        guard let token = try store.rotateToken(id: id, sha256: hash, at: WallClock.now()) else { return nil }
        state.withLock { s in
            s.active = s.active.filter { $0.value.id != id }
            s.active[hash] = token
        }
        return (token, secret)
    }

    /// Configured tokens first, then those made through the API, oldest first.
    public func list() throws -> [APIToken] {
        let configuredHashes = state.withLock { Set($0.configured.values.map(\.sha256)) }
        let configured = state.withLock { $0.configured.values.map(\.token) }.sorted { $0.id < $1.id }
        return configured + (try store.tokens().filter { !configuredHashes.contains($0.sha256) }.map(\.token))
    }

    /// Forgets the tokens made through the API that were revoked or expired before `before`
    /// (retention: tasks' and executions' own tokens pile up otherwise); returns how many.
    public func prune(endedBefore before: Double) throws -> Int {
        let gone = Set(try store.pruneTokens(endedBefore: before).map(\.id))
        state.withLock { $0.active = $0.active.filter { !gone.contains($0.value.id) } }
        return gone.count
    }

    /// Revokes token `id`: it stops working at once. Nil when there is no such token.
    public func revoke(id: String) throws -> APIToken? {
        let now = WallClock.now()
        if let c = state.withLock({ $0.configured[id] }) {
            var token = c.token
            token.revokedAt = token.revokedAt ?? now
            try store.insertToken(token, sha256: c.sha256)
            state.withLock {
                $0.configured[id]?.token = token
                $0.active[c.sha256] = nil
            }
            return token
        }
        guard let token = try store.revokeToken(id: id, at: now) else { return nil }
        state.withLock { $0.active = $0.active.filter { $0.value.id != id } }
        return token
    }
}
