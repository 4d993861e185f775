import PropellerCore

/// Tasks: the API's commands, and the phases and results proplets report.
extension ClusterState {
    /// A new task (state `created`, or `pending` when `start` is set: created and queued in one
    /// transaction; placement is the second) with its first transitions, the manager's defaults
    /// filled in.
    public static func newTask(_ spec: TaskSpec, id: String, start: Bool, at now: Double, configuration: ManagerConfiguration) -> (TaskRecord, [TaskTransition]) {
        var spec = spec
        if spec.resources.memoryBytes == 0 { spec.resources.memoryBytes = configuration.defaultMemoryBytes }
        if spec.resources.pids == 0 { spec.resources.pids = configuration.defaultPids }
        var t = TaskRecord(id: id, spec: spec, createdAt: now)
        var transitions = [TaskTransition(taskId: t.id, state: .created, attempt: 0, at: now, reason: nil)]
        if start {
            t.status = .pending
            t.attempt = 1
            transitions.append(TaskTransition(taskId: t.id, state: .pending, attempt: 1, at: now, reason: nil))
        }
        return (t, transitions)
    }

    /// A new task, stored: queued and placed when it is pending.
    mutating func created(_ t: TaskRecord) {
        log(.info, "task created", ["task": t.id, "name": t.spec.name, "image": t.spec.image])
        if t.state == .pending {
            active[t.id] = t
            pendingQueue.append(t.id)
            schedulePending()
        }
        emit(.reply(.task(active[t.id] ?? written(t.id) ?? t)))
    }

    /// Queues a created or finished task for (another) run.
    mutating func start(_ id: String, stored: TaskRecord?) throws {
        if let t = active[id] { throw APIError.conflict("task \(id) is already \(t.state.rawValue)") }
        guard var t = stored else { throw APIError.notFound("no task \(id)") }
        t.attempt += 1
        t.status = .pending
        t.reason = nil
        t.stopRequested = false
        t.startedAt = nil
        t.finishedAt = nil
        t.result = nil
        t.updatedAt = now.wall
        active[id] = t
        pendingQueue.append(id)
        save([t], [TaskTransition(taskId: id, state: .pending, attempt: t.attempt, at: now.wall, reason: nil)])
        schedulePending()
        emit(.reply(.task(active[id] ?? written(id) ?? t)))
    }

    /// Stops a task: a queued one at once, a placed one by asking its proplet (the state changes
    /// when the proplet reports the container gone; the stop is sent again until it does).
    mutating func stop(_ id: String, signal: Int32, grace: Double, stored: TaskRecord?) throws {
        guard var t = active[id] else {
            guard var s = stored else { throw APIError.notFound("no task \(id)") }
            guard s.state == .created else { throw APIError.conflict("task \(id) has already \(s.state.rawValue)") }
            s.status = .stopped(on: nil)
            s.updatedAt = now.wall
            s.finishedAt = now.wall
            s.reason = "stopped before it was started"
            save([s], [TaskTransition(taskId: id, state: .stopped, attempt: s.attempt, at: now.wall, reason: s.reason)])
            emit(.reply(.task(s)))
            return
        }
        t.stopRequested = true
        t.updatedAt = now.wall
        switch t.state {
        case .pending:
            t.status = .stopped(on: nil)
            t.reason = "stopped while pending"
            t.finishedAt = now.wall
            active[id] = nil
            pendingQueue.removeAll { $0 == id }
            save([t], [TaskTransition(taskId: id, state: .stopped, attempt: t.attempt, at: now.wall, reason: t.reason)])
        case .scheduled, .running, .unknown:
            active[id] = t
            save([t], [])
            if let p = t.assignedProplet {
                log(.info, "stopping task", ["task": id, "proplet": p])
                // Sent again (SIGKILL) only once its grace and two heartbeat intervals have passed.
                dispatchedAt[id] = now.mono + .milliseconds(Int64(max(0, min(grace, 86_400)) * 1000))
                emit(.stop(StopTask(taskId: id, attempt: t.attempt, signal: signal, graceSeconds: grace), to: p))
            }
        default: break
        }
        emit(.reply(.task(t)))
    }

    /// A phase report of the current attempt from the proplet it is placed on.
    mutating func phase(_ e: TaskEvent) {
        guard var t = active[e.taskId], t.attempt == e.attempt, t.assignedProplet == e.propletId else { return }
        t.status = t.status.with(phase: e.phase.rawValue)
        t.updatedAt = now.wall
        var transitions: [TaskTransition] = []
        if e.phase == .running && (t.state == .scheduled || (t.state == .unknown && t.startedAt == nil)) {
            t.status = .running(on: e.propletId, phase: e.phase.rawValue)
            t.startedAt = e.at
            transitions.append(TaskTransition(taskId: t.id, state: .running, attempt: t.attempt, at: e.at, reason: nil))
            log(.info, "task running", ["task": t.id, "proplet": e.propletId])
        } else if t.state == .scheduled {
            transitions.append(TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: e.at, reason: e.phase.rawValue))
        }
        unreported[t.id] = nil
        active[t.id] = t
        save([t], transitions)
    }

    /// A final result: stores it, releases the reservation and acknowledges it. The driver sends
    /// the acknowledgement only once the store has every write of the task (else the proplet
    /// keeps the result in its outbox and sends it again). Duplicates and results of old attempts
    /// are acknowledged (on the same terms) and otherwise ignored.
    mutating func result(_ r: TaskResult, stored: TaskRecord?) {
        guard let t = active[r.taskId], t.attempt == r.attempt else {
            acceptLateResult(r, stored)
            emit(.acknowledge(r.ref, to: r.propletId))
            return
        }
        guard t.assignedProplet == r.propletId else {
            log(.warning, "result from a proplet the task is not placed on: ignored", ["task": r.taskId, "from": r.propletId, "placed_on": t.assignedProplet ?? "-"])
            emit(.acknowledge(r.ref, to: r.propletId))
            return
        }
        var ended = t
        ended.result = r
        ended.startedAt = t.startedAt ?? r.startedAt
        if r.state == .failed {
            requeueOrFail(ended, reason: r.error ?? Self.describeFailure(r))
        } else {
            ended.status = .ended(r.state, on: r.propletId)
            ended.reason = Self.reason(for: r, stopRequested: t.stopRequested)
            ended.updatedAt = now.wall
            ended.finishedAt = r.finishedAt ?? now.wall
            release(t)
            active[t.id] = nil
            save([ended], [TaskTransition(taskId: t.id, state: ended.state, attempt: t.attempt, at: ended.finishedAt ?? now.wall, reason: ended.reason)])
        }
        log(.info, "task ended", ["task": t.id, "state": r.state.rawValue, "exit_code": r.exitCode.map(String.init) ?? "-", "proplet": r.propletId])
        emit(.acknowledge(r.ref, to: r.propletId))
        schedulePending()
    }

    /// The real result of an attempt the manager gave up on its proplet (lost, or no longer
    /// listing it), when nothing replaced it (no restart policy took it on): the task ends in the
    /// state it really reached.
    private mutating func acceptLateResult(_ r: TaskResult, _ stored: TaskRecord?) {
        guard var t = givenUpWithItsProplet(r.ref, stored, on: r.propletId) else { return }
        t.result = r
        t.status = .ended(r.state, on: r.propletId)
        t.startedAt = t.startedAt ?? r.startedAt
        t.finishedAt = r.finishedAt ?? now.wall
        t.updatedAt = now.wall
        t.reason = Self.reason(for: r, stopRequested: t.stopRequested)
        let note = "reported by proplet \(r.propletId) after the manager had given the attempt up"
        save([t], [TaskTransition(taskId: t.id, state: t.state, attempt: t.attempt, at: t.finishedAt ?? now.wall, reason: t.reason.map { "\($0); \(note)" } ?? note)])
        log(.notice, "late result accepted", ["task": t.id, "attempt": "\(t.attempt)", "state": r.state.rawValue, "proplet": r.propletId])
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
}
