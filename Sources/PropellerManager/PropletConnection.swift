/// A proplet's connection as the manager sees it, with Nomad's `disconnect` semantics: a proplet
/// whose connection drops (its Last Will, or heartbeats that stop) is `disconnected`, and what it
/// runs is `unknown` rather than failed, for a grace period; only past it is the proplet `lost`
/// and its work failed or rescheduled by policy. A broker restart or a network blip therefore
/// costs nothing: the proplet comes back, reconciles, and its results are accepted.
///
/// A value with a pure transition function, so each rule is tested by a table
/// (`PropletConnectionTests`).
public enum PropletConnection: Sendable, Equatable {
    /// Heartbeats arrive; `lastSeen` is the latest.
    case alive(lastSeen: ContinuousClock.Instant)
    /// Silent since `since`, for `reason`; its allocations are `unknown`.
    case disconnected(since: ContinuousClock.Instant, reason: String)
    /// Gone past the grace period (or shut down): its allocations were failed or rescheduled.
    case lost(reason: String)

    public enum Event: Sendable, Equatable {
        /// A heartbeat or announcement arrived.
        case heard(at: ContinuousClock.Instant)
        /// Its connection dropped (the broker delivered its Last Will).
        case dropped(at: ContinuousClock.Instant)
        /// It said goodbye after reporting everything it ran (a graceful shutdown).
        case leftGracefully
        /// The liveness timer.
        case tick(at: ContinuousClock.Instant)
        /// An operator (or a test) gives it up now, with the reason.
        case givenUp(reason: String)
    }

    /// What a transition means for the proplet's work.
    public enum Change: Sendable, Equatable {
        case none
        /// alive → disconnected: its allocations become `unknown`.
        case disconnected(reason: String)
        /// disconnected → alive within the grace: its allocations are reconciled, not replaced.
        case reconnected
        /// → lost: its allocations are failed or rescheduled.
        case lost(reason: String)
        /// lost → alive: a proplet the manager gave up on is back (what it still runs is stopped
        /// by reconciliation where it was replaced).
        case returned
    }

    /// When a silent proplet counts as disconnected, and how long a disconnected one may stay
    /// away before it is lost.
    public struct Timing: Sendable, Equatable {
        public var silentAfter: Duration
        public var grace: Duration
        public var missedHeartbeats: Int

        public init(silentAfter: Duration, grace: Duration, missedHeartbeats: Int) {
            self.silentAfter = silentAfter
            self.grace = grace
            self.missedHeartbeats = missedHeartbeats
        }
    }

    public var isAlive: Bool {
        if case .alive = self { return true }
        return false
    }

    public var isLost: Bool {
        if case .lost = self { return true }
        return false
    }

    /// The name the API shows.
    public var name: String {
        switch self {
        case .alive: "alive"
        case .disconnected: "disconnected"
        case .lost: "lost"
        }
    }

    /// Applies `event`; returns what changed.
    public mutating func apply(_ event: Event, timing: Timing) -> Change {
        switch (self, event) {
        case (.alive, .heard(let at)):
            self = .alive(lastSeen: at)
            return .none
        case (.disconnected, .heard(let at)):
            self = .alive(lastSeen: at)
            return .reconnected
        case (.lost, .heard(let at)):
            self = .alive(lastSeen: at)
            return .returned
        case (.alive, .dropped(let at)):
            let reason = "its connection dropped (Last Will)"
            self = .disconnected(since: at, reason: reason)
            return .disconnected(reason: reason)
        case (.disconnected, .dropped), (.lost, .dropped), (.lost, .leftGracefully), (.lost, .tick), (.lost, .givenUp):
            return .none
        case (.alive, .givenUp(let reason)), (.disconnected, .givenUp(let reason)):
            self = .lost(reason: reason)
            return .lost(reason: reason)
        case (.alive, .leftGracefully), (.disconnected, .leftGracefully):
            self = .lost(reason: "shut down")
            return .lost(reason: "shut down")
        case (.alive(let lastSeen), .tick(let now)):
            guard now - lastSeen > timing.silentAfter else { return .none }
            let reason = "missed \(timing.missedHeartbeats) heartbeats"
            self = .disconnected(since: lastSeen + timing.silentAfter, reason: reason)
            return .disconnected(reason: reason)
        case (.disconnected(let since, let reason), .tick(let now)):
            guard now - since > timing.grace else { return .none }
            let lost = "\(reason), and did not return within \(timing.grace.formattedSeconds)"
            self = .lost(reason: lost)
            return .lost(reason: lost)
        }
    }
}

extension Duration {
    /// `15s`, `2.5s`: for reasons people read.
    var formattedSeconds: String {
        let ms = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
        return ms % 1000 == 0 ? "\(ms / 1000)s" : "\(Double(ms) / 1000)s"
    }
}
