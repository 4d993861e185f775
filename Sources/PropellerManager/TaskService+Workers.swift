import PropellerCore

/// Actor workers hold reservations in the same ledger as tasks, so a warm worker's memory and
/// CPU are as real to the scheduler as a running task's. They are keyed by worker id in
/// `placedOn`; the task reconciliation skips them (they are not in `active`).
extension TaskService {
    /// Where a worker's reservation was made, or why it could not be.
    public enum WorkerPlacement: Sendable, Equatable {
        case placed(propletID: String)
        /// Nothing fits now; a later call may succeed.
        case wait(reason: String)
        /// No proplet could ever hold it.
        case never(reason: String)
    }

    /// Reserves `resources` for worker `id` on the proplet the scheduling policy picks (or on
    /// `pinned`, when a restarted manager re-adopts a worker that already exists there).
    public func reserveWorker(_ id: String, resources: Resources, constraints: [String: String] = [:], pinned: String? = nil) -> WorkerPlacement {
        let request = PlacementRequest(resources: resources, constraints: constraints, pinnedProplet: pinned)
        switch scheduler.place(request, on: nodes) {
        case .place(let i):
            let node = nodes[i].id
            if placedOn[node, default: []].insert(id).inserted {
                nodes[i].allocated = nodes[i].allocated + resources
                nodes[i].taskCount += 1
            }
            return .placed(propletID: node)
        case .wait(let reason): return .wait(reason: reason)
        case .never(let reason): return .never(reason: reason)
        }
    }

    /// Gives a worker's reservation back and places what waited for the room.
    public func releaseWorker(_ id: String, on propletID: String, resources: Resources) {
        guard let i = nodeIndex[propletID], placedOn[propletID]?.remove(id) != nil else { return }
        nodes[i].allocated = nodes[i].allocated - resources
        nodes[i].taskCount -= 1
        schedulePending()
    }

    /// Whether the manager counts this proplet alive.
    public func isAlive(_ propletID: String) -> Bool { proplets[propletID]?.alive ?? false }

    /// Whether work placed on this proplet still counts (alive, or disconnected within the grace).
    public func holdsWork(_ propletID: String) -> Bool { connections[propletID].map { !$0.isLost } ?? false }
}
