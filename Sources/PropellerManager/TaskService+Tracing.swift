import PropellerCore
import PropellerTracing
import Tracing

/// A task's trace (ARCHITECTURE.md, "Traces"): the API request that created it, then here the
/// wait in the queue ("schedule"), the start message, and the result; the proplet adds the
/// attempt with its pull, unpack and run between the last two.
extension TaskService {
    /// `start` with the trace context of a "start message" span, recorded after a "schedule"
    /// span for the wait since the task was queued, both in the task's trace.
    func traced(_ start: StartTask, on proplet: String) -> StartTask {
        guard traces.enabled, let carrier = state.active[start.taskId]?.spec.trace else { return start }
        let parent = traces.context(carrier)
        let now = WallClock.now()
        let attributes = ["propeller.task.id": start.taskId, "propeller.task.attempt": String(start.attempt), "propeller.proplet.id": proplet]
        traces.record("schedule", parent: parent, from: queuedAt.removeValue(forKey: start.taskId) ?? now, to: now, attributes: attributes)
        let context = traces.record("start message", parent: parent, from: now, to: WallClock.now(), kind: .producer, attributes: attributes)
        var traced = start
        traced.trace = traces.carrier(context)
        if queuedAt.count > 100_000 { queuedAt = [:] }  // starts that never came (tasks deleted while queued)
        return traced
    }

    /// A "result" span in the attempt's trace, from the proplet's report to its handling here.
    func traceResult(_ r: TaskResult, from start: Double) {
        guard traces.enabled, let carrier = r.trace else { return }
        traces.record("result", parent: traces.context(carrier), from: start, to: WallClock.now(), kind: .consumer,
                      attributes: ["propeller.task.id": r.taskId, "propeller.task.attempt": String(r.attempt), "propeller.task.state": r.state.rawValue],
                      error: r.state == .completed ? nil : (r.error ?? r.state.rawValue))
    }
}
