import PropellerCore

/// Proplets: announcements, heartbeats and their reconciliation, connections and liveness.
extension ClusterState {
    var connectionTiming: PropletConnection.Timing {
        PropletConnection.Timing(silentAfter: configuration.deadAfter, grace: configuration.effectiveDisconnectGrace, missedHeartbeats: configuration.missedHeartbeats)
    }

    mutating func register(_ a: PropletAnnouncement) {
        var record = PropletRecord(announcement: a, now: now.wall)
        let known = proplets[a.propletId]
        if let known {
            record.volumes = known.volumes
            record.registeredAt = known.registeredAt
            record.epoch = known.epoch
            record.draining = known.draining
            record.eligible = known.eligible
            record.drain = known.drain
        }
        let changed = known.map { $0.state != "alive" || $0.capacity != a.capacity || $0.labels != a.labels || $0.name != a.name || $0.version != a.version
            || $0.hostVolumes != record.hostVolumes || $0.networks != record.networks || $0.namespaces != record.namespaces } ?? true
        let change = heard(a.propletId)
        addNode(record)
        if changed {
            emit(.saveProplet(record))
            log(.info, known == nil ? "proplet registered" : "proplet updated",
                ["proplet": a.propletId, "cpu_millis": "\(a.capacity.cpuMillis)", "memory": "\(ByteSize(bytes: a.capacity.memoryBytes))", "tasks": "\(a.capacity.tasks)"])
        } else {
            proplets[a.propletId]?.lastSeen = now.wall
        }
        afterConnect(a.propletId, change)
    }

    /// Heard from `id` now: its connection's transition (the caller updates the record).
    private mutating func heard(_ id: String) -> PropletConnection.Change {
        guard var connection = connections[id] else {
            connections[id] = .alive(lastSeen: now.mono)  // a new proplet
            return .none
        }
        let change = connection.apply(.heard(at: now.mono), timing: connectionTiming)
        connections[id] = connection
        return change
    }

    private mutating func afterConnect(_ id: String, _ change: PropletConnection.Change) {
        switch change {
        case .reconnected:
            log(.notice, "proplet reconnected", ["proplet": id])
            recoverUnknown(on: id)
        case .returned:
            log(.notice, "proplet returned", ["proplet": id])
        default: break
        }
    }

    /// A heartbeat refreshes liveness and reconciles what the proplet runs with the ledger. An
    /// `offline` one is the proplet's Last Will (its connection dropped: disconnected) or, with a
    /// sequence number, its goodbye after a graceful shutdown that reported everything (lost).
    mutating func heartbeat(_ hb: PropletHeartbeat, stored: [String: TaskRecord]) {
        if hb.status == .offline {
            connectionEvent(hb.seq == 0 ? .dropped(at: now.mono) : .leftGracefully, to: hb.propletId)
            return
        }
        if let a = hb.announcement {
            register(a)
        } else if proplets[hb.propletId] != nil {
            let change = heard(hb.propletId)
            if change != .none {
                updateRecord(hb.propletId)
                afterConnect(hb.propletId, change)
            }
        } else {
            return  // unknown and unannounced: wait for its announcement
        }
        setDraining(hb.propletId, hb.status == .draining)
        if var p = proplets[hb.propletId], p.volumes != hb.volumes {
            p.volumes = hb.volumes
            proplets[hb.propletId] = p
            emit(.saveProplet(p))
        }
        reconcile(hb, stored: stored)
        reconcileWorkers(hb)
        schedulePending()
        // After the heartbeat is applied: a proplet given up on has its raised epoch by now.
        if hb.awaitingEpoch == true, let p = proplets[hb.propletId] {
            emit(.confirm(PropletEpoch(propletId: p.id, epoch: p.epoch ?? 0)))
            let asks = (epochAsks[p.id] ?? 0) + 1
            epochAsks[p.id] = asks
            if asks == 5 {
                log(.error, "a proplet keeps asking for its placement epoch: the answers do not reach it (a broker ACL without control/proplet/+/epoch? write it again with `propeller provision add-proplet` or a new deployment)",
                    ["proplet": p.id])
            }
        } else {
            epochAsks[hb.propletId] = nil
        }
    }

    private mutating func reconcile(_ hb: PropletHeartbeat, stored: [String: TaskRecord]) {
        let id = hb.propletId
        let running = Set(hb.running ?? [])
        // Held starts (waiting for the epoch) are neither lost nor running.
        let reported = running.union(hb.finished ?? []).union(hb.held ?? [])
        let resendAfter = configuration.livenessInterval * 2
        func sentLongAgo(_ taskID: String) -> Bool { dispatchedAt[taskID].map { now.mono - $0 > resendAfter } ?? true }
        for taskID in ledger.tasks(on: id) {
            guard let t = active[taskID] else { continue }
            if reported.contains(t.currentAttempt) {
                unreported[taskID] = nil
                // A stop is sent again until the proplet no longer runs the attempt.
                if t.stopRequested && running.contains(t.currentAttempt) && sentLongAgo(taskID) {
                    log(.notice, "resending stop", ["task": taskID, "proplet": id])
                    dispatchedAt[taskID] = now.mono
                    emit(.stop(StopTask(taskId: taskID, attempt: t.attempt, signal: 9, graceSeconds: 0), to: id))
                }
                continue
            }
            var silence = unreported[taskID] ?? Silence(since: now.mono)
            silence.count += 1
            // Gone for good: not listed by three heartbeats over two intervals or more, and a
            // start it may have lost sent again at least once.
            let gone = silence.count >= 3 && now.mono - silence.since >= resendAfter && sentLongAgo(taskID)
                && (t.state != .scheduled || t.stopRequested || silence.resends >= 1)
            if gone {
                unreported[taskID] = silence
                requeueOrFail(t, reason: t.stopRequested ? "stopped before it started" : Self.noLongerRuns(id))
            } else if t.state == .scheduled && !t.stopRequested && sentLongAgo(taskID) && silence.resends < 2 {
                // The start may have been lost (a broker restart without persistence): send it
                // again; the proplet ignores an attempt it already has. Never after a stop.
                log(.notice, "resending start", ["task": taskID, "proplet": id])
                silence.resends += 1
                unreported[taskID] = silence
                dispatchedAt[taskID] = now.mono
                emit(.start(startMessage(t, on: id), to: id))
            } else {
                unreported[taskID] = silence
            }
        }
        // Containers the manager does not expect there (a finished or re-placed attempt): stop.
        // An attempt given up with its lost proplet and not replaced goes on instead.
        for ref in hb.running ?? [] {
            let t = active[ref.taskId]
            if t == nil, let given = stored[ref.taskId], revive(ref, given, on: id) { continue }
            if t == nil || t?.attempt != ref.attempt || t?.assignedProplet != id {
                log(.notice, "stopping an orphaned container", ["task": ref.taskId, "attempt": "\(ref.attempt)", "proplet": id])
                emit(.stop(StopTask(taskId: ref.taskId, attempt: ref.attempt, signal: 9, graceSeconds: 0), to: id))
            }
        }
    }

    /// A proplet shutting down says `draining` in its heartbeats: what runs there finishes (and
    /// reports), nothing new is placed there. A heartbeat that says `online` ends it.
    private mutating func setDraining(_ id: String, _ draining: Bool) {
        guard var p = proplets[id], (p.draining ?? false) != draining else { return }
        p.draining = draining ? true : nil
        proplets[id] = p
        ledger.setClosed(id, Self.closed(p))
        emit(.saveProplet(p))
        log(.notice, draining ? "proplet draining: nothing new is placed there" : "proplet no longer draining", ["proplet": id])
    }

    /// Applies a connection event to proplet `id` and carries out what it means for its work.
    mutating func connectionEvent(_ event: PropletConnection.Event, to id: String) {
        guard proplets[id] != nil, var connection = connections[id] else { return }
        let change = connection.apply(event, timing: connectionTiming)
        connections[id] = connection
        switch change {
        case .none: return
        case .disconnected(let reason):
            updateRecord(id)
            log(.warning, "proplet disconnected", ["proplet": id, "reason": reason, "grace": configuration.effectiveDisconnectGrace.formattedSeconds])
            markUnknown(on: id, reason: "proplet \(id) disconnected: \(reason)")
        case .lost(let reason):
            // A new epoch: starts still queued for it from before are withdrawn (it drops them
            // when it is back and learns the epoch), since its work is failed or moved now.
            let epoch = (proplets[id]?.epoch ?? 0) + 1
            proplets[id]?.epoch = epoch
            updateRecord(id)
            log(.warning, "proplet lost", ["proplet": id, "reason": reason, "epoch": "\(epoch)"])
            for taskID in ledger.tasks(on: id) {
                guard let t = active[taskID] else { continue }
                requeueOrFail(t, reason: "proplet lost: \(id) \(reason)")
            }
            loseWorkers(on: id, reason: "proplet \(id) is lost: \(reason)")
            schedulePending()
        case .reconnected, .returned:
            updateRecord(id)
            afterConnect(id, change)
        }
    }

    /// Writes the proplet's connection state into its record (and the scheduler's node).
    private mutating func updateRecord(_ id: String) {
        guard var p = proplets[id], let connection = connections[id] else { return }
        p.alive = connection.isAlive
        p.state = connection.name
        switch connection {
        case .alive: p.reason = nil; p.lastSeen = now.wall
        case .disconnected(_, let reason), .lost(let reason): p.reason = reason
        }
        proplets[id] = p
        ledger.setAlive(id, p.alive)
        emit(.saveProplet(p))
    }

    /// The proplet's placed tasks become `unknown`: they may still run; nothing new goes there.
    private mutating func markUnknown(on id: String, reason: String) {
        var changed: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        for taskID in ledger.tasks(on: id) {
            guard var t = active[taskID], t.state == .scheduled || t.state == .running else { continue }
            t.status = .unknown(on: id, phase: t.phase)
            t.reason = reason
            t.updatedAt = now.wall
            active[taskID] = t
            changed.append(t)
            transitions.append(TaskTransition(taskId: taskID, state: .unknown, attempt: t.attempt, at: now.wall, reason: reason))
        }
        save(changed, transitions)
    }

    /// Back within the grace: `unknown` tasks return to where they were; the heartbeats'
    /// reconciliation then confirms them (or finds them gone).
    private mutating func recoverUnknown(on id: String) {
        var changed: [TaskRecord] = []
        var transitions: [TaskTransition] = []
        for taskID in ledger.tasks(on: id) {
            guard var t = active[taskID], t.state == .unknown else { continue }
            t.status = t.startedAt == nil ? .scheduled(on: id, phase: t.phase) : .running(on: id, phase: t.phase)
            t.reason = nil
            t.updatedAt = now.wall
            unreported[taskID] = nil
            dispatchedAt[taskID] = now.mono
            active[taskID] = t
            changed.append(t)
            transitions.append(TaskTransition(taskId: taskID, state: t.state, attempt: t.attempt, at: now.wall, reason: "proplet \(id) reconnected"))
        }
        save(changed, transitions)
    }

    /// Moves silent proplets to `disconnected`, and disconnected ones past the grace to `lost`.
    /// Nothing moves while the manager's own link to the broker is down (it cannot hear anyone),
    /// and every clock starts again when the link is back: the manager's outage is not theirs.
    mutating func tick(_ link: BrokerLink?) {
        if let link {
            guard link.connected else {
                if !brokerLinkDown { log(.warning, "the manager's broker connection is down: proplet liveness paused") }
                brokerLinkDown = true
                return
            }
            if brokerLinkDown || link.connections != brokerConnections {
                if brokerConnections != 0 {
                    log(.notice, "the manager's broker connection is back: proplet liveness starts again")
                    for (id, connection) in connections {
                        switch connection {
                        case .alive: connections[id] = .alive(lastSeen: now.mono)
                        case .disconnected(_, let reason): connections[id] = .disconnected(since: now.mono, reason: reason)
                        case .lost: break
                        }
                    }
                }
                brokerLinkDown = false
                brokerConnections = link.connections
                return
            }
        }
        for id in connections.keys.sorted() { connectionEvent(.tick(at: now.mono), to: id) }
    }

    // MARK: Workers of a proplet given up on

    /// A task given up on its proplet (lost, or no longer listing it), whose attempt that
    /// proplet runs after all (back, or its start arrived late), and that nothing replaced (no
    /// restart policy took it on): `running` again, with its reservation, and its real result
    /// will count.
    private mutating func revive(_ ref: TaskAttempt, _ stored: TaskRecord, on id: String) -> Bool {
        guard var t = givenUpWithItsProplet(ref, stored, on: id) else { return false }
        t.status = .running(on: id, phase: nil)
        t.reason = nil
        t.finishedAt = nil
        t.updatedAt = now.wall
        active[t.id] = t
        reserve(t, on: id)
        unreported[t.id] = nil
        save([t], [TaskTransition(taskId: t.id, state: .running, attempt: t.attempt, at: now.wall, reason: "proplet \(id) runs it after all")])
        log(.notice, "task revived", ["task": t.id, "attempt": "\(t.attempt)", "proplet": id])
        return true
    }

    /// `stored` when `ref` is its attempt that the manager gave up on proplet `id` without a
    /// result (failed, or stopped when a stop had been asked for): because the proplet was lost,
    /// or because its heartbeats stopped listing it (its start may still have been on its way:
    /// MQTT bounds no delivery time).
    func givenUpWithItsProplet(_ ref: TaskAttempt, _ stored: TaskRecord?, on id: String) -> TaskRecord? {
        guard let stored, stored.id == ref.taskId, stored.attempt == ref.attempt, stored.assignedProplet == id,
              stored.state == .failed || stored.state == .stopped, stored.result == nil,
              stored.reason?.hasPrefix("proplet lost") == true || stored.reason == Self.noLongerRuns(id) else { return nil }
        return stored
    }

    /// Why an attempt its proplet stopped listing was given up.
    static func noLongerRuns(_ proplet: String) -> String { "proplet \(proplet) no longer runs the task" }
}
