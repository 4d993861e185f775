import Foundation
import PropellerCore

/// A proplet's identity on the broker made through the API (`propeller proplet add NAME`): its
/// id is also its broker user name, the secret is given once to the caller and kept only by the
/// broker, and revoking it takes it off the broker at once.
public struct PropletIdentity: Codable, Sendable, Equatable {
    /// `proplet-` and 12 hex digits: the proplet's id and its broker user name.
    public var id: String
    /// What the operator called it (the machine, say); not unique.
    public var name: String
    public var createdBy: String
    public var createdAt: Double
    public var revokedAt: Double?
    public var revokedBy: String?
    /// The only namespaces whose work it may take (nil: any). The manager holds the proplet to
    /// them whatever it announces, so a team's machine cannot be given other teams' tasks and
    /// secrets by changing its own flags.
    public var namespaces: [String]?

    public init(id: String, name: String, createdBy: String, createdAt: Double, revokedAt: Double? = nil, revokedBy: String? = nil, namespaces: [String]? = nil) {
        self.id = id
        self.name = name
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.revokedBy = revokedBy
        self.namespaces = namespaces
    }
}

/// Where proplet identities are recorded (never their secrets).
public protocol PropletIdentityStore: Sendable {
    func insertPropletIdentity(_ identity: PropletIdentity) throws
    /// Every identity made through the API, revoked ones included, oldest first.
    func propletIdentities() throws -> [PropletIdentity]
    func propletIdentity(id: String) throws -> PropletIdentity?
    /// Marks the identity revoked; false when it is unknown or was revoked already.
    func revokePropletIdentity(id: String, by: String, at: Double) throws -> Bool
}

/// The broker's users and their permissions, changed while it runs: mosquitto's
/// dynamic-security plugin or a NATS users file that the servers reload.
public protocol BrokerAuthority: Sendable {
    /// `mosquitto dynamic security`, `NATS users file /etc/nats/users.conf`: for messages.
    var summary: String { get }
    /// Lets proplet `id` in with `password`, granted exactly what a provisioned proplet is.
    func admit(proplet id: String, password: String) async throws
    /// Takes proplet `id` off the broker: it may no longer log in, and a connection it holds is
    /// closed now. Revoking one that the broker does not know is not an error.
    func revoke(proplet id: String) async throws
}

/// `propeller proplet add|revoke|identities`: records in the store, users on the broker, and
/// the proplet given up at once when its identity is revoked.
public struct PropletIdentities: Sendable {
    let store: any PropletIdentityStore
    let broker: any BrokerAuthority
    /// The broker as proplets reach it, and the topics, for the config file given back.
    let brokerURL: String
    let brokerCA: String?
    let domain: String
    let channel: String

    public init(store: any PropletIdentityStore, broker: any BrokerAuthority, brokerURL: String, brokerCA: String?, domain: String, channel: String) {
        self.store = store
        self.broker = broker
        self.brokerURL = brokerURL
        self.brokerCA = brokerCA
        self.domain = domain
        self.channel = channel
    }

    /// What `add` gives back: the record, the secret (once) and a proplet config file with it.
    public struct Added: Encodable, Sendable {
        public var identity: PropletIdentity
        public var password: String
        public var config: String

        enum Keys: String, CodingKey { case password, config }
        public func encode(to encoder: any Encoder) throws {
            try identity.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(password, forKey: .password)
            try c.encode(config, forKey: .config)
        }
    }

    public func add(name: String, namespaces: [String]? = nil, by who: String) async throws -> Added {
        let identity = PropletIdentity(id: "proplet-" + SecureRandom.bytes(6).hexString, name: name, createdBy: who, createdAt: WallClock.now(),
                                       namespaces: namespaces.map { Array(Set($0)).sorted() })
        let password = SecureRandom.token()
        // Recorded first: a broker that then fails leaves a record to revoke, never a user on the
        // broker that no record names.
        try store.insertPropletIdentity(identity)
        do {
            try await broker.admit(proplet: identity.id, password: password)
        } catch {
            _ = try? store.revokePropletIdentity(id: identity.id, by: "the broker refused it", at: WallClock.now())
            throw error
        }
        return Added(identity: identity, password: password, config: config(identity, password: password))
    }

    /// Revokes `id` on the broker, then in the store; nil when no identity has that id.
    public func revoke(_ id: String, by who: String) async throws -> PropletIdentity? {
        guard let identity = try store.propletIdentity(id: id) else { return nil }
        try await broker.revoke(proplet: id)
        if identity.revokedAt == nil { _ = try store.revokePropletIdentity(id: id, by: who, at: WallClock.now()) }
        return try store.propletIdentity(id: id)
    }

    public func list() throws -> [PropletIdentity] { try store.propletIdentities() }

    /// The ids revoked so far: the manager drops what they still send.
    public func revoked() throws -> Set<String> { Set(try store.propletIdentities().filter { $0.revokedAt != nil }.map(\.id)) }

    /// The namespaces each live identity is held to (those restricted only).
    public func restrictions() throws -> [String: [String]] {
        Dictionary(uniqueKeysWithValues: try store.propletIdentities().compactMap { i in
            guard i.revokedAt == nil, let namespaces = i.namespaces else { return nil }
            return (i.id, namespaces)
        })
    }

    /// A `--config` file for `propeller proplet` with this identity (mode 600 where it lands).
    func config(_ identity: PropletIdentity, password: String) -> String {
        var lines = ["# Proplet \(identity.id) (\(identity.name)), made by `propeller proplet add` on \(Date(timeIntervalSince1970: identity.createdAt)).",
                     "# Holds a secret: keep it mode 600. Keys are the command's long options; flags given on the command line win.",
                     "id = \(identity.id)", "mqtt = \(brokerURL)"]
        if let brokerCA { lines.append("mqtt-ca = \(brokerCA)") }
        lines += ["mqtt-username = \(identity.id)", "mqtt-password = \(password)", "domain = \(domain)", "channel = \(channel)"]
        // The manager holds it to these whatever the file says; here so that it says so too.
        lines += (identity.namespaces ?? []).map { "namespace = \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }
}
