import PropellerCore

/// Actor workers hold reservations in the same allocation table as tasks, so a warm worker's
/// memory and CPU are as real to the scheduler as a running task's (`.worker(id)` in the
/// ``AllocationTable``).
extension TaskService {
    /// Reserves `resources` for worker `id` on the proplet the scheduling policy picks (or on
    /// `pinned`, when a restarted manager re-adopts a worker that already exists there).
    public func reserveWorker(_ id: String, resources: Resources, constraints: [String: String] = [:], pinned: String? = nil) -> WorkerPlacement {
        guard case .worker(let placement) = try? apply(.reserveWorker(id, resources, constraints: constraints, pinned: pinned)) else {
            return .wait(reason: "the manager could not apply the reservation")
        }
        return placement
    }

    /// Gives a worker's reservation back and places what waited for the room.
    public func releaseWorker(_ id: String, on propletID: String) {
        deliver(.releaseWorker(id, on: propletID))
    }

    /// Whether the manager counts this proplet alive.
    public func isAlive(_ propletID: String) -> Bool { state.proplets[propletID]?.alive ?? false }

    /// Whether work placed on this proplet still counts (alive, or disconnected within the grace).
    public func holdsWork(_ propletID: String) -> Bool { state.holdsWork(propletID) }
}
