import Foundation
import PropellerCore

/// What proplets report, and the liveness timer, as events for the cluster state.
extension TaskService {
    /// Applies a report or a tick (they are never refused; writes the store refuses stay
    /// ``unsaved``).
    func deliver(_ event: ClusterEvent, at now: Moment = .now) {
        do {
            try apply(event, at: now)
        } catch {
            logger.error("event not applied", metadata: ["error": "\(error)"])
        }
    }

    // Each report is applied at once; with `wait` (the default) the call returns once its writes
    // are committed and its messages sent. The broker loop does not wait: what arrives during a
    // commit goes in the next batch.

    public func handleAnnouncement(_ a: PropletAnnouncement, wait: Bool = true) async {
        deliver(.announced(held(a, log: true)))
        if wait { await settle() }
    }

    /// A heartbeat, with the stored records of the attempts it runs that are no longer active
    /// (an attempt given up with its proplet may be taken back).
    /// `a` with the namespaces its proplet's identity holds it to, whatever it announced.
    func held(_ a: PropletAnnouncement, log: Bool = false) -> PropletAnnouncement {
        guard let held = heldToNamespaces.withLock({ $0[a.propletId] }), a.namespaces?.sorted() != held else { return a }
        if log {
            logger.notice("proplet held to its identity's namespaces", metadata: ["proplet": "\(a.propletId)", "announced": "\(a.namespaces ?? [])", "held_to": "\(held)"])
        }
        var a = a
        a.namespaces = held
        return a
    }

    public func handleHeartbeat(_ hb: PropletHeartbeat, wait: Bool = true) async {
        heartbeats &+= 1
        var hb = hb
        // A heartbeat carries the announcement again (for a manager that missed it): held the same.
        hb.announcement = hb.announcement.map { held($0) }
        var stored: [String: TaskRecord] = [:]
        for ref in hb.running ?? [] where state.active[ref.taskId] == nil {
            if let t = try? self.stored(ref.taskId) { stored[t.id] = t }
        }
        deliver(.heartbeat(hb, stored: stored))
        if wait { await settle() }
    }

    public func handleEvent(_ e: TaskEvent, wait: Bool = true) async {
        if let report = e.pull {
            // A pull's progress: for watchers only (nothing to store), from the proplet running the attempt.
            guard var t = state.active[e.taskId], t.attempt == e.attempt, t.assignedProplet == e.propletId, t.phase == TaskEvent.Phase.pulling.rawValue else { return }
            pullReports[e.taskId] = report
            t.pull = report
            notifyWatchers(t)
            return
        }
        if e.phase != .pulling { pullReports[e.taskId] = nil }
        deliver(.phase(e))
        if wait { await settle() }
    }

    /// A final result, acknowledged only once the store has it.
    public func handleResult(_ r: TaskResult, wait: Bool = true) async {
        let received = WallClock.now()
        let current = state.active[r.taskId]
        deliver(.result(r, stored: current == nil || current?.attempt != r.attempt ? try? self.stored(r.taskId) : nil))
        if wait { await settle() }
        traceResult(r, from: received)
    }

    /// Declares lost a proplet (an operator's decision, or tests): its work is failed or re-queued.
    public func markDead(_ id: String, reason: String) async {
        deliver(.givenUp(proplet: id, reason: reason))
        await settle()
    }

    /// Moves silent proplets to `disconnected`, and disconnected ones past the grace to `lost`;
    /// writes what the store refused before.
    public func checkLiveness(now: ContinuousClock.Instant = .now, brokerLink: (connected: Bool, connections: Int)? = nil) async {
        if brokerLink?.connected != false && hasStagedWrites { startWriting() }
        deliver(.tick(brokerLink: brokerLink.map { BrokerLink(connected: $0.connected, connections: $0.connections) }), at: Moment(wall: WallClock.now(), mono: now))
        await settle()
    }

    /// A log block from `sender`, kept only while the task runs there (a proplet cannot write
    /// into another proplet's tasks).
    public func handleLog(_ block: LogBlock, from sender: String) {
        guard let t = state.active[block.taskId], t.attempt == block.attempt else { return }
        guard t.assignedProplet == sender else {
            logger.error("rejected a log block", metadata: ["task": "\(block.taskId)", "sender": "\(sender)", "runs_on": "\(t.assignedProplet ?? "-")"])
            return
        }
        do {
            try store.appendLog(taskID: block.taskId, stream: block.stream, data: block.data, keep: configuration.logKeepBytes)
        } catch {
            logger.error("store write failed", metadata: ["error": "\(error)"])
        }
        for follower in followers[block.taskId]?.values ?? [:].values { follower.offer(block) }
    }
}
