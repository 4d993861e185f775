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
        if let known {
            record.registeredAt = known.registeredAt
            record.epoch = known.epoch
        }
        let changed = known.map { $0.state != "alive" || $0.capacity != a.capacity || $0.labels != a.labels || $0.name != a.name || $0.version != a.version } ?? true
        let change = connect(a.propletId)
        addNode(record)
        if changed {
            do { try store.saveProplet(record) } catch { logger.error("store write failed", metadata: ["error": "\(error)"]) }
            logger.info(known == nil ? "proplet registered" : "proplet updated",
                        metadata: ["proplet": "\(a.propletId)", "cpu_millis": "\(a.capacity.cpuMillis)", "memory": "\(ByteSize(bytes: a.capacity.memoryBytes))", "tasks": "\(a.capacity.tasks)"])
        } else {
            proplets[a.propletId]?.lastSeen = now
        }
        afterConnect(a.propletId, change)
    }

    /// Heard from `id` now: its connection's transition (the caller updates the record).
    private func connect(_ id: String) -> PropletConnection.Change {
        guard var connection = connections[id] else {
            connections[id] = .alive(lastSeen: .now)  // a new proplet
            return .none
        }
        let change = connection.apply(.heard(at: .now), timing: connectionTiming)
        connections[id] = connection
        return change
    }

    private func afterConnect(_ id: String, _ change: PropletConnection.Change) {
        switch change {
        case .reconnected:
            logger.notice("proplet reconnected", metadata: ["proplet": "\(id)"])
            recoverUnknown(on: id)
        case .returned:
            logger.notice("proplet returned", metadata: ["proplet": "\(id)"])
        default: break
        }
    }

    var connectionTiming: PropletConnection.Timing {
        PropletConnection.Timing(silentAfter: configuration.deadAfter, grace: configuration.effectiveDisconnectGrace, missedHeartbeats: configuration.missedHeartbeats)
    }

    /// A heartbeat: refreshes liveness and reconciles what the proplet runs with the ledger. An
    /// `offline` one is the proplet's Last Will (its connection dropped: disconnected) or, with a
    /// sequence number, its goodbye after a graceful shutdown that reported everything (lost).
    public func handleHeartbeat(_ hb: PropletHeartbeat) {
        if hb.status == .offline {
            apply(hb.seq == 0 ? .dropped(at: .now) : .leftGracefully, to: hb.propletId)
            return
        }
        if let a = hb.announcement {
            register(a)
        } else if proplets[hb.propletId] != nil {
            let change = connect(hb.propletId)
            if change != .none {
                updateRecord(hb.propletId)
                afterConnect(hb.propletId, change)
            }
        } else {
            return  // unknown and unannounced: wait for its announcement
        }
        reconcile(hb)
        schedulePending()
        // After the heartbeat is applied: a proplet given up on has its raised epoch by now.
        if hb.awaitingEpoch == true, let p = proplets[hb.propletId] {
            bus.confirm(PropletEpoch(propletId: p.id, epoch: p.epoch ?? 0))
        }
    }

    func reconcile(_ hb: PropletHeartbeat) {
        let id = hb.propletId
        let running = Set(hb.running ?? [])
        let reported = running.union(hb.finished ?? [])
        let now = WallClock.now()
        let resendAfter = configuration.livenessInterval * 2
        for taskID in ledger.tasks(on: id) {
            guard let t = active[taskID] else { continue }
            if reported.contains(t.currentAttempt) {
                unreported[taskID] = 0
                // A stop is sent again until the proplet no longer runs the attempt.
                if t.stopRequested && running.contains(t.currentAttempt) && (dispatchedAt[taskID].map { ContinuousClock.now - $0 > resendAfter } ?? true) {
                    logger.notice("resending stop", metadata: ["task": "\(taskID)", "proplet": "\(id)"])
                    dispatchedAt[taskID] = .now
                    bus.send(StopTask(taskId: taskID, attempt: t.attempt, signal: 9, graceSeconds: 0), to: id)
                }
                continue
            }
            let misses = (unreported[taskID] ?? 0) + 1
            unreported[taskID] = misses
            let sentLongAgo = dispatchedAt[taskID].map { ContinuousClock.now - $0 > resendAfter } ?? true
            if t.state == .scheduled && !t.stopRequested && sentLongAgo && misses < 3 {
                // The start may have been lost (a broker restart without persistence): send it
                // again; the proplet ignores an attempt it already has. Never after a stop.
                logger.notice("resending start", metadata: ["task": "\(taskID)", "proplet": "\(id)"])
                dispatchedAt[taskID] = .now
                bus.send(startMessage(t, on: id), to: id)
            } else if misses >= 3 && sentLongAgo {
                requeueOrFail(t, reason: t.stopRequested ? "stopped before it started" : "proplet \(id) no longer runs the task", at: now)
            }
        }
        // Containers the manager does not expect there (a finished or re-placed attempt): stop.
        // An attempt given up with its lost proplet and not replaced goes on instead.
        for ref in hb.running ?? [] {
            let t = active[ref.taskId]
            if t == nil, revive(ref, on: id) { continue }
            if t == nil || t?.attempt != ref.attempt || t?.assignedProplet != id {
                logger.notice("stopping an orphaned container", metadata: ["task": "\(ref.taskId)", "attempt": "\(ref.attempt)", "proplet": "\(id)"])
                bus.send(StopTask(taskId: ref.taskId, attempt: ref.attempt, signal: 9, graceSeconds: 0), to: id)
            }
        }
    }

    /// Applies a connection event to proplet `id` and carries out what it means for its work.
    func apply(_ event: PropletConnection.Event, to id: String) {
        guard proplets[id] != nil, var connection = connections[id] else { return }
        let change = connection.apply(event, timing: connectionTiming)
        connections[id] = connection
        switch change {
        case .none: return
        case .disconnected(let reason):
            updateRecord(id)
            logger.warning("proplet disconnected", metadata: ["proplet": "\(id)", "reason": "\(reason)", "grace": "\(configuration.effectiveDisconnectGrace.formattedSeconds)"])
            markUnknown(on: id, reason: "proplet \(id) disconnected: \(reason)")
        case .lost(let reason):
            // A new epoch: starts still queued for it from before are withdrawn (it drops them
            // when it is back and learns the epoch), since its work is failed or moved now.
            let epoch = (proplets[id]?.epoch ?? 0) + 1
            proplets[id]?.epoch = epoch
            updateRecord(id)
            logger.warning("proplet lost", metadata: ["proplet": "\(id)", "reason": "\(reason)", "epoch": "\(proplets[id]?.epoch ?? 0)"])
            let now = WallClock.now()
            for taskID in ledger.tasks(on: id) {
                guard let t = active[taskID] else { continue }
                requeueOrFail(t, reason: "proplet lost: \(id) \(reason)", at: now)
            }
            schedulePending()
        case .reconnected, .returned:
            updateRecord(id)
            afterConnect(id, change)
        }
    }

    /// Writes the proplet's connection state into its record (and the scheduler's node).
    private func updateRecord(_ id: String) {
        guard var p = proplets[id], let connection = connections[id] else { return }
        p.alive = connection.isAlive
        p.state = connection.name
        switch connection {
        case .alive: p.reason = nil; p.lastSeen = WallClock.now()
        case .disconnected(_, let reason), .lost(let reason): p.reason = reason
        }
        proplets[id] = p
        ledger.setAlive(id, p.alive)
        do { try store.saveProplet(p) } catch { logger.error("store write failed", metadata: ["error": "\(error)"]) }
    }

    /// The proplet's placed tasks become `unknown`: they may still run; nothing new goes there.
    private func markUnknown(on id: String, reason: String) {
        let now = WallClock.now()
        var changed: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        for taskID in ledger.tasks(on: id) {
            guard var t = active[taskID], t.state == .scheduled || t.state == .running else { continue }
            t.state = .unknown
            t.reason = reason
            t.updatedAt = now
            active[taskID] = t
            changed.append(t)
            transitions.append(TaskTransition(taskId: taskID, state: .unknown, attempt: t.attempt, at: now, reason: reason))
        }
        persist(changed, transitions)
    }

    /// Back within the grace: `unknown` tasks return to where they were; the heartbeats'
    /// reconciliation then confirms them (or finds them gone).
    private func recoverUnknown(on id: String) {
        let now = WallClock.now()
        var changed: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        for taskID in ledger.tasks(on: id) {
            guard var t = active[taskID], t.state == .unknown else { continue }
            t.state = t.startedAt == nil ? .scheduled : .running
            t.reason = nil
            t.updatedAt = now
            unreported[taskID] = 0
            dispatchedAt[taskID] = .now
            active[taskID] = t
            changed.append(t)
            transitions.append(TaskTransition(taskId: taskID, state: t.state, attempt: t.attempt, at: now, reason: "proplet \(id) reconnected"))
        }
        persist(changed, transitions)
    }

    /// Declares lost a proplet (an operator's decision, or tests): its work is failed or re-queued.
    public func markDead(_ id: String, reason: String) {
        apply(.givenUp(reason: reason), to: id)
    }

    /// Moves silent proplets to `disconnected`, and disconnected ones past the grace to `lost`.
    /// Nothing moves while the manager's own link to the broker is down (it cannot hear anyone),
    /// and every clock starts again when the link is back: the manager's outage is not theirs.
    public func checkLiveness(now: ContinuousClock.Instant = .now, brokerLink: (connected: Bool, connections: Int)? = nil) {
        if let link = brokerLink {
            guard link.connected else {
                if !brokerLinkDown { logger.warning("the manager's broker connection is down: proplet liveness paused") }
                brokerLinkDown = true
                return
            }
            if brokerLinkDown || link.connections != brokerConnections {
                if brokerConnections != 0 {
                    logger.notice("the manager's broker connection is back: proplet liveness starts again")
                    for (id, connection) in connections {
                        switch connection {
                        case .alive: connections[id] = .alive(lastSeen: now)
                        case .disconnected(_, let reason): connections[id] = .disconnected(since: now, reason: reason)
                        case .lost: break
                        }
                    }
                }
                brokerLinkDown = false
                brokerConnections = link.connections
                return
            }
        }
        flushUnsaved()
        for id in connections.keys.sorted() { apply(.tick(at: now), to: id) }
    }

    public func handleEvent(_ e: TaskEvent) {
        guard var t = active[e.taskId], t.attempt == e.attempt, t.assignedProplet == e.propletId else { return }
        t.phase = e.phase.rawValue
        t.updatedAt = WallClock.now()
        var transitions: [TaskTransition] = []
        if e.phase == .running && (t.state == .scheduled || (t.state == .unknown && t.startedAt == nil)) {
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

    /// A final result: stores it, releases the reservation, and acknowledges it only once the
    /// store has it (else the proplet keeps it in its outbox and sends it again). Duplicates and
    /// results of old attempts are acknowledged and otherwise ignored.
    public func handleResult(_ r: TaskResult) {
        guard let t = active[r.taskId], t.attempt == r.attempt else {
            if acceptLateResult(r) { bus.acknowledge(r.ref, to: r.propletId) }
            return
        }
        guard t.assignedProplet == r.propletId else {
            logger.warning("result from a proplet the task is not placed on: ignored", metadata: ["task": "\(r.taskId)", "from": "\(r.propletId)", "placed_on": "\(t.assignedProplet ?? "-")"])
            bus.acknowledge(r.ref, to: r.propletId)
            return
        }
        let now = WallClock.now()
        var ended = t
        ended.result = r
        ended.startedAt = t.startedAt ?? r.startedAt
        let committed: Bool
        if r.state == .failed {
            committed = requeueOrFail(ended, reason: r.error ?? Self.describeFailure(r), at: now, onlyIfStored: true)
        } else {
            ended.state = r.state
            ended.reason = Self.reason(for: r, stopRequested: t.stopRequested)
            ended.updatedAt = now
            ended.finishedAt = r.finishedAt ?? now
            committed = persist([ended], [TaskTransition(taskId: t.id, state: ended.state, attempt: t.attempt, at: ended.finishedAt ?? now, reason: ended.reason)],
                                notify: false, keepIfUnsaved: false)
            if committed {
                release(t)
                active[t.id] = nil
                notifyWatchers(ended)
            }
        }
        guard committed else {
            logger.error("result not stored: not acknowledged, the proplet sends it again", metadata: ["task": "\(t.id)", "attempt": "\(t.attempt)"])
            return
        }
        logger.info("task ended", metadata: ["task": "\(t.id)", "state": "\(r.state.rawValue)", "exit_code": "\(r.exitCode.map(String.init) ?? "-")", "proplet": "\(r.propletId)"])
        bus.acknowledge(r.ref, to: r.propletId)
        schedulePending()
    }

    /// A task the manager failed when its proplet was lost, whose attempt that proplet, back, still
    /// runs, and that nothing replaced (no restart policy took it on): it is `running` again, with
    /// its reservation, and its real result will count.
    func revive(_ ref: TaskAttempt, on id: String) -> Bool {
        guard var t = givenUpWithItsProplet(ref, on: id) else { return false }
        let now = WallClock.now()
        t.state = .running
        t.reason = nil
        t.finishedAt = nil
        t.updatedAt = now
        guard persist([t], [TaskTransition(taskId: t.id, state: .running, attempt: t.attempt, at: now, reason: "proplet \(id) returned and still runs it")],
                      keepIfUnsaved: false) else { return false }
        active[t.id] = t
        reserve(t, on: id)
        unreported[t.id] = 0
        logger.notice("task revived", metadata: ["task": "\(t.id)", "attempt": "\(t.attempt)", "proplet": "\(id)"])
        return true
    }

    /// The stored task when `ref` is its attempt that was failed because proplet `id` was lost,
    /// without a result.
    func givenUpWithItsProplet(_ ref: TaskAttempt, on id: String) -> TaskRecord? {
        guard let stored = try? stored(ref.taskId), stored.attempt == ref.attempt, stored.assignedProplet == id,
              stored.state == .failed, stored.result == nil, stored.reason?.hasPrefix("proplet lost") == true else { return nil }
        return stored
    }

    /// The real result of an attempt the manager failed because its proplet was lost, when
    /// nothing replaced it (no restart policy took it on): the task ends in the state it really
    /// reached. Returns false only when the store could not take it (not acknowledged then).
    func acceptLateResult(_ r: TaskResult) -> Bool {
        guard var t = givenUpWithItsProplet(r.ref, on: r.propletId) else { return true }
        let now = WallClock.now()
        t.result = r
        t.state = r.state
        t.startedAt = t.startedAt ?? r.startedAt
        t.finishedAt = r.finishedAt ?? now
        t.updatedAt = now
        t.reason = Self.reason(for: r, stopRequested: t.stopRequested)
        let note = "reported by proplet \(r.propletId) after it was declared lost"
        guard persist([t], [TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: t.finishedAt ?? now, reason: t.reason.map { "\($0); \(note)" } ?? note)],
                      keepIfUnsaved: false) else {
            return false
        }
        logger.notice("late result accepted", metadata: ["task": "\(t.id)", "attempt": "\(t.attempt)", "state": "\(r.state.rawValue)", "proplet": "\(r.propletId)"])
        return true
    }

    /// Why a task ended as `r` says (nil for a completion).
    static func reason(for r: TaskResult, stopRequested: Bool) -> String? {
        switch r.state {
        case .failed: r.error ?? describeFailure(r)
        case .stopped: stopRequested ? "stopped on request" : (r.error ?? "stopped by proplet \(r.propletId) (shutting down)")
        default: nil
        }
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
