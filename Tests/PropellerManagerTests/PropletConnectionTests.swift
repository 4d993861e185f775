import PropellerManager
import Testing

/// The proplet connection state machine, rule by rule: each row is a state, an event, the state
/// after it and what the manager does about its work.
@Suite struct PropletConnectionTests {
    static let t0 = ContinuousClock.now
    static let timing = PropletConnection.Timing(silentAfter: .seconds(15), grace: .seconds(15), missedHeartbeats: 3)

    struct Row: Sendable, CustomTestStringConvertible {
        var before: PropletConnection
        var event: PropletConnection.Event
        var after: PropletConnection
        var change: PropletConnection.Change
        var testDescription: String { "\(before.name) + \(event) → \(after.name)" }
    }

    static let rows: [Row] = {
        let t0 = Self.t0
        return [
            // Alive.
            Row(before: .alive(lastSeen: t0), event: .heard(at: t0 + .seconds(5)), after: .alive(lastSeen: t0 + .seconds(5)), change: .none),
            Row(before: .alive(lastSeen: t0), event: .tick(at: t0 + .seconds(15)), after: .alive(lastSeen: t0), change: .none),
            Row(before: .alive(lastSeen: t0), event: .tick(at: t0 + .seconds(16)), after: .disconnected(since: t0 + .seconds(15), reason: "missed 3 heartbeats"),
                change: .disconnected(reason: "missed 3 heartbeats")),
            Row(before: .alive(lastSeen: t0), event: .dropped(at: t0 + .seconds(1)), after: .disconnected(since: t0 + .seconds(1), reason: "its connection dropped (Last Will)"),
                change: .disconnected(reason: "its connection dropped (Last Will)")),
            Row(before: .alive(lastSeen: t0), event: .leftGracefully, after: .lost(reason: "shut down"), change: .lost(reason: "shut down")),
            // Disconnected.
            Row(before: .disconnected(since: t0, reason: "r"), event: .heard(at: t0 + .seconds(14)), after: .alive(lastSeen: t0 + .seconds(14)), change: .reconnected),
            Row(before: .disconnected(since: t0, reason: "r"), event: .tick(at: t0 + .seconds(15)), after: .disconnected(since: t0, reason: "r"), change: .none),
            Row(before: .disconnected(since: t0, reason: "r"), event: .tick(at: t0 + .seconds(16)), after: .lost(reason: "r, and did not return within 15s"),
                change: .lost(reason: "r, and did not return within 15s")),
            Row(before: .disconnected(since: t0, reason: "r"), event: .dropped(at: t0 + .seconds(3)), after: .disconnected(since: t0, reason: "r"), change: .none),
            Row(before: .disconnected(since: t0, reason: "r"), event: .leftGracefully, after: .lost(reason: "shut down"), change: .lost(reason: "shut down")),
            // Lost.
            Row(before: .lost(reason: "r"), event: .heard(at: t0), after: .alive(lastSeen: t0), change: .returned),
            Row(before: .lost(reason: "r"), event: .tick(at: t0 + .seconds(3600)), after: .lost(reason: "r"), change: .none),
            Row(before: .lost(reason: "r"), event: .dropped(at: t0), after: .lost(reason: "r"), change: .none),
            Row(before: .lost(reason: "r"), event: .leftGracefully, after: .lost(reason: "r"), change: .none),
            // Given up by an operator.
            Row(before: .alive(lastSeen: t0), event: .givenUp(reason: "g"), after: .lost(reason: "g"), change: .lost(reason: "g")),
            Row(before: .disconnected(since: t0, reason: "r"), event: .givenUp(reason: "g"), after: .lost(reason: "g"), change: .lost(reason: "g")),
            Row(before: .lost(reason: "r"), event: .givenUp(reason: "g"), after: .lost(reason: "r"), change: .none),
        ]
    }()

    @Test(arguments: rows)
    func transition(_ row: Row) {
        var state = row.before
        let change = state.apply(row.event, timing: Self.timing)
        #expect(state == row.after)
        #expect(change == row.change)
    }

    /// Over long random event sequences the machine agrees with a reference model written as
    /// plain timestamps: when it was last heard, when it was noticed gone (a drop, or a tick past
    /// the silence), whether it left or was given up. Alive exactly after a `heard`; lost exactly
    /// when the model says so.
    @Test func randomSequencesAgreeWithAReferenceModel() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var state = PropletConnection.alive(lastSeen: Self.t0)
            var now = Self.t0
            var heardAt = Self.t0
            var disconnectedAt: ContinuousClock.Instant?
            var gone = false
            for _ in 0..<200 {
                now += .milliseconds(Int.random(in: 0...8000, using: &rng))
                let event: PropletConnection.Event
                switch Int.random(in: 0..<12, using: &rng) {
                case 0...3: event = .heard(at: now)
                case 4: event = .dropped(at: now)
                case 5: event = .leftGracefully
                default: event = .tick(at: now)
                }
                _ = state.apply(event, timing: Self.timing)
                switch event {
                case .heard: (heardAt, disconnectedAt, gone) = (now, nil, false)
                case .dropped: if !gone && disconnectedAt == nil { disconnectedAt = now }
                case .leftGracefully, .givenUp: gone = true
                case .tick:
                    if !gone && disconnectedAt == nil && now - heardAt > Self.timing.silentAfter { disconnectedAt = heardAt + Self.timing.silentAfter }
                    if !gone, let d = disconnectedAt, now - d > Self.timing.grace { gone = true }
                }
                #expect(state.isLost == gone, "after \(event): \(state.name)")
                #expect(state.isAlive == (!gone && disconnectedAt == nil), "after \(event): \(state.name)")
            }
        }
    }
}
