import Foundation
import PropellerCore

/// What the manager does with messages from proplets, and the liveness monitor.
extension TaskService {
    public func handleAnnouncement(_ a: PropletAnnouncement) {
        register(a)
        schedulePending()
    }

    func register(_ a: PropletAnnouncement) {
        let now = WallClock.now()
        var record = PropletRecord(announcement: a, now: now)
        let known = proplets[a.propletId]
        if let known { record.registeredAt = known.registeredAt }
        let changed = known.map { !$0.alive || $0.capacity != a.capacity || $0.labels != a.labels || $0.name != a.name || $0.version != a.version } ?? true
        addNode(record)
        lastSeen[a.propletId] = .now
        if changed {
            do { try store.saveProplet(record) } catch { logger.error("store write failed", metadata: ["error": "\(error)"]) }
            logger.info(known == nil ? "proplet registered" : (known?.alive == false ? "proplet returned" : "proplet updated"),
                        metadata: ["proplet": "\(a.propletId)", "cpu_millis": "\(a.capacity.cpuMillis)", "memory": "\(ByteSize(bytes: a.capacity.memoryBytes))", "tasks": "\(a.capacity.tasks)"])
        } else {
            proplets[a.propletId]?.lastSeen = now
        }
    }

    /// A heartbeat: refreshes liveness and reconciles what the proplet runs with the ledger.
    public func handleHeartbeat(_ hb: PropletHeartbeat) {
        if hb.status == .offline {
            markDead(hb.propletId, reason: "went offline (Last Will or shutdown)")
            return
        }
        if let a = hb.announcement {
            register(a)
        } else if proplets[hb.propletId] != nil {
            lastSeen[hb.propletId] = .now
        } else {
            return  // unknown and unannounced: wait for its announcement
        }
        reconcile(hb)
        schedulePending()
    }

    func reconcile(_ hb: PropletHeartbeat) {
        let id = hb.propletId
        let reported = Set((hb.running ?? []) + (hb.finished ?? []))
        let now = WallClock.now()
        let resendAfter = configuration.livenessInterval * 2
        for taskID in placedOn[id] ?? [] {
            guard let t = active[taskID] else { continue }
            if reported.contains(t.currentAttempt) {
                unreported[taskID] = 0
                continue
            }
            let misses = (unreported[taskID] ?? 0) + 1
            unreported[taskID] = misses
            let sentLongAgo = dispatchedAt[taskID].map { ContinuousClock.now - $0 > resendAfter } ?? true
            if t.state == .scheduled && sentLongAgo && misses < 3 {
                // The start may have been lost (a broker restart without persistence): send it
                // again; the proplet ignores an attempt it already has.
                logger.notice("resending start", metadata: ["task": "\(taskID)", "proplet": "\(id)"])
                dispatchedAt[taskID] = .now
                bus.send(startMessage(t), to: id)
            } else if misses >= 3 && sentLongAgo {
                requeueOrFail(t, reason: "proplet \(id) no longer runs the task", at: now)
            }
        }
        // Containers the manager does not expect there (a finished or re-placed attempt): stop.
        for ref in hb.running ?? [] {
            let t = active[ref.taskId]
            if t == nil || t?.attempt != ref.attempt || t?.assignedProplet != id {
                logger.notice("stopping an orphaned container", metadata: ["task": "\(ref.taskId)", "attempt": "\(ref.attempt)", "proplet": "\(id)"])
                bus.send(StopTask(taskId: ref.taskId, attempt: ref.attempt, signal: 9, graceSeconds: 0), to: id)
            }
        }
    }

    /// Marks a proplet dead and fails (or re-queues) the tasks it held.
    public func markDead(_ id: String, reason: String) {
        guard var p = proplets[id], p.alive else { return }
        p.alive = false
        p.reason = reason
        proplets[id] = p
        if let i = nodeIndex[id] { nodes[i].alive = false }
        do { try store.saveProplet(p) } catch { logger.error("store write failed", metadata: ["error": "\(error)"]) }
        logger.warning("proplet dead", metadata: ["proplet": "\(id)", "reason": "\(reason)"])
        let now = WallClock.now()
        for taskID in placedOn[id] ?? [] {
            guard let t = active[taskID] else { continue }
            requeueOrFail(t, reason: "proplet lost: \(id) \(reason)", at: now)
        }
        schedulePending()
    }

    /// Declares dead every alive proplet silent for `missedHeartbeats` intervals.
    public func checkLiveness(now: ContinuousClock.Instant = .now) {
        let limit = configuration.deadAfter
        for (id, p) in proplets where p.alive {
            if let seen = lastSeen[id], now - seen > limit {
                markDead(id, reason: "missed \(configuration.missedHeartbeats) heartbeats")
            }
        }
    }

    public func handleEvent(_ e: TaskEvent) {
        guard var t = active[e.taskId], t.attempt == e.attempt, t.assignedProplet == e.propletId else { return }
        t.phase = e.phase.rawValue
        t.updatedAt = WallClock.now()
        var transitions: [TaskTransition] = []
        if e.phase == .running && t.state == .scheduled {
            t.state = .running
            t.startedAt = e.at
            transitions.append(TaskTransition(taskId: t.id, state: .running, attempt: t.attempt, at: e.at, reason: nil))
            logger.info("task running", metadata: ["task": "\(t.id)", "proplet": "\(e.propletId)"])
        } else if t.state == .scheduled {
            transitions.append(TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: e.at, reason: e.phase.rawValue))
        }
        unreported[t.id] = 0
        active[t.id] = t
        persist([t], transitions)
    }

    /// A final result: stores it, releases the reservation, acknowledges. Duplicates and results
    /// of old attempts are acknowledged and otherwise ignored.
    public func handleResult(_ r: TaskResult) {
        defer { bus.acknowledge(r.ref, to: r.propletId) }
        guard var t = active[r.taskId], t.attempt == r.attempt else { return }
        guard t.assignedProplet == r.propletId else {
            logger.warning("result from a proplet the task is not placed on: ignored", metadata: ["task": "\(r.taskId)", "from": "\(r.propletId)", "placed_on": "\(t.assignedProplet ?? "-")"])
            return
        }
        let now = WallClock.now()
        t.result = r
        t.startedAt = t.startedAt ?? r.startedAt
        logger.info("task ended", metadata: ["task": "\(t.id)", "state": "\(r.state.rawValue)", "exit_code": "\(r.exitCode.map(String.init) ?? "-")", "proplet": "\(r.propletId)"])
        if r.state == .failed {
            requeueOrFail(t, reason: r.error ?? Self.describeFailure(r), at: now)
        } else {
            release(t)
            t.state = r.state
            t.reason = r.state == .stopped ? (t.stopRequested ? "stopped on request" : "stopped by proplet \(r.propletId) (shutting down)") : nil
            t.updatedAt = now
            t.finishedAt = r.finishedAt ?? now
            active[t.id] = nil
            persist([t], [TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: t.finishedAt ?? now, reason: t.reason)])
        }
        schedulePending()
    }

    static func describeFailure(_ r: TaskResult) -> String {
        if r.timedOut { return "timed out" }
        if r.oomKilled { return "killed by the OOM killer: memory limit exceeded" }
        if let s = r.signal { return "killed by signal \(s)" }
        return "exited with code \(r.exitCode ?? -1)"
    }

    /// A log block from `sender`, kept only while the task runs there (a proplet cannot write
    /// into another proplet's tasks).
    public func handleLog(_ block: LogBlock, from sender: String) {
        guard let t = active[block.taskId], t.attempt == block.attempt else { return }
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
