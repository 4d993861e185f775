import PropellerCore

/// Actor workers hold reservations in the same ledger as tasks, so a warm worker's memory and
/// CPU are as real to the scheduler as a running task's. They are keyed by worker id in
/// the ``AllocationTable`` as `.worker(id)`.
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
        if let held = ledger.allocation(of: .worker(id)) { return .placed(propletID: held.proplet) }
        switch scheduler.place(request, on: ledger.nodes) {
        case .place(let i):
            let node = ledger.nodes[i].id
            ledger.reserve(.worker(id), resources, on: node)
            return .placed(propletID: node)
        case .wait(let reason): return .wait(reason: reason)
        case .never(let reason): return .never(reason: reason)
        }
    }

    /// Gives a worker's reservation back and places what waited for the room.
    public func releaseWorker(_ id: String, on propletID: String) {
        guard ledger.allocation(of: .worker(id))?.proplet == propletID, ledger.release(.worker(id)) != nil else { return }
        schedulePending()
    }

    /// Whether the manager counts this proplet alive.
    public func isAlive(_ propletID: String) -> Bool { proplets[propletID]?.alive ?? false }

    /// Whether work placed on this proplet still counts (alive, or disconnected within the grace).
    public func holdsWork(_ propletID: String) -> Bool { connections[propletID].map { !$0.isLost } ?? false }
}
