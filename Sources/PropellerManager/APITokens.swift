import PropellerCore

/// An API token as the manager shows it: never the secret, which exists only in the answer
/// that created it.
public struct APIToken: Codable, Sendable, Hashable {
    public var id: String
    public var name: String
    public var createdAt: Double
    public var revokedAt: Double?

    public init(id: String, name: String, createdAt: Double, revokedAt: Double? = nil) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
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
        /// Hash → token id, for the tokens that work.
        var active: [String: String] = [:]
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
        for (hash, id) in stored.filter({ $0.token.revokedAt == nil }).map({ ($0.sha256, $0.token.id) }) { state.active[hash] = id }
        for (i, c) in configured.enumerated() {
            let hash = try Self.parseHash(c.sha256, what: "api-token-sha256 #\(i + 1)")
            let id = "cfg-" + hash.prefix(12)
            let revokedAt = stored.first { $0.sha256 == hash }?.token.revokedAt
            state.configured[id] = (APIToken(id: id, name: c.name, createdAt: 0, revokedAt: revokedAt), hash)
            if !revoked.contains(hash) { state.active[hash] = id }
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

    /// The id of the (unrevoked) token `presented`, or nil.
    public func authenticate(_ presented: String) -> String? {
        guard !presented.isEmpty, presented.utf8.count <= 256 else { return nil }
        let hash = Self.hash(presented)
        return state.withLock { $0.active[hash] }
    }

    /// Makes a token; its secret is returned once and kept nowhere.
    public func create(name: String) throws -> (token: APIToken, secret: String) {
        let secret = Self.prefix + SecureRandom.bytes(32).hexString
        let hash = Self.hash(secret)
        let token = APIToken(id: "tok-" + SecureRandom.bytes(6).hexString, name: name, createdAt: WallClock.now())
        try store.insertToken(token, sha256: hash)
        state.withLock { $0.active[hash] = token.id }
        return (token, secret)
    }

    /// Configured tokens first, then those made through the API, oldest first.
    public func list() throws -> [APIToken] {
        let configuredHashes = state.withLock { Set($0.configured.values.map(\.sha256)) }
        let configured = state.withLock { $0.configured.values.map(\.token) }.sorted { $0.id < $1.id }
        return configured + (try store.tokens().filter { !configuredHashes.contains($0.sha256) }.map(\.token))
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
        state.withLock { $0.active = $0.active.filter { $0.value != id } }
        return token
    }
}
