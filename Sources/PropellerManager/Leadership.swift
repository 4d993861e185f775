import PropellerCore

/// Leadership among managers that share one store (PostgreSQL): who decides, under which
/// fencing epoch, and who else is there. Implemented by the store that makes it possible.
public protocol Leadership: Sendable {
    /// This manager's name among its peers.
    var id: String { get }
    /// Where this manager serves its API (followers forward to the leader's).
    var address: String { get }
    /// How long a lease lasts without renewal.
    var duration: Duration { get }
    /// With `renewing` nil, takes the lease when it is free, expired or this manager's own,
    /// always under a new epoch (so that nothing of an earlier term can write); with the epoch
    /// of the term that holds it, renews it. The epoch when this manager now leads; nil when
    /// another does (or, renewing, took it meanwhile).
    func acquire(renewing: Int64?) throws -> Int64?
    /// Gives the lease up at once (a clean shutdown).
    func release(epoch: Int64) throws
    /// Who leads now, as the store says; nil when none has ever led.
    func leader() throws -> LeaderInfo?
    /// Says that this manager is alive, for ``members(within:)``.
    func announce() throws
    /// The managers seen within `within`.
    func members(within: Duration) throws -> [ManagerMember]
    /// From now on every write of the store must be made under `epoch` (nil: none).
    func fence(epoch: Int64?)
}

/// The lease as the store holds it.
public struct LeaderInfo: Sendable, Hashable, Codable {
    public var id: String
    public var address: String
    public var epoch: Int64
    /// Seconds until the lease expires (negative: expired and free to take).
    public var expiresIn: Double

    public init(id: String, address: String, epoch: Int64, expiresIn: Double) {
        self.id = id
        self.address = address
        self.epoch = epoch
        self.expiresIn = expiresIn
    }
}

/// A manager that shares the store.
public struct ManagerMember: Sendable, Hashable, Codable {
    public var id: String
    public var address: String
    /// Seconds since it last announced itself.
    public var seenAgo: Double

    public init(id: String, address: String, seenAgo: Double) {
        self.id = id
        self.address = address
        self.seenAgo = seenAgo
    }
}

/// This manager's hold on the leadership, by its own monotonic clock: valid until the lease
/// could have expired in the store (counted from the moment the renewal was sent, so never
/// later than the store's expiry), or until a write was refused. A task service with a lease
/// sends nothing to proplets once it is no longer held: a deposed leader's decisions were not
/// stored, and another manager now decides.
public final class LeaderLease: Sendable {
    public let epoch: Int64
    private let state: Locked<(deadline: ContinuousClock.Instant, lost: String?)>

    public init(epoch: Int64, validUntil deadline: ContinuousClock.Instant) {
        self.epoch = epoch
        state = Locked((deadline, nil))
    }

    /// A renewal that was sent at `sent` succeeded.
    public func renewed(sentAt sent: ContinuousClock.Instant, duration: Duration) {
        state.withLock { if $0.lost == nil { $0.deadline = max($0.deadline, sent + duration) } }
    }

    /// The lease is gone (a refused write, a lost renewal); it does not come back.
    public func lose(_ reason: String) {
        state.withLock { if $0.lost == nil { $0.lost = reason } }
    }

    /// Why the lease is no longer held; nil while it is.
    public var lostReason: String? {
        state.withLock { s in
            if let lost = s.lost { return lost }
            return ContinuousClock.now < s.deadline ? nil : "the lease was not renewed in time"
        }
    }

    public var isHeld: Bool { lostReason == nil }
}
