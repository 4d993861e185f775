import PropellerCore
import PropellerTracing
import Tracing

extension PropletAgent {
    /// `result` with the trace context of an "attempt" span recorded in the task's trace (under
    /// the manager's start message), with "pull", "unpack" and "run" spans under it from the
    /// times the attempt reached each phase. Unchanged when the start carried no trace.
    nonisolated static func traced(_ result: TaskResult, of execution: Execution, traces: Traces, propletID: String) -> TaskResult {
        guard traces.enabled, let carrier = execution.start.trace else { return result }
        let phases = execution.phases
        let end = result.finishedAt ?? WallClock.now()
        let start = execution.acceptedAt
        let attributes = ["propeller.task.id": result.taskId, "propeller.task.attempt": String(result.attempt), "propeller.proplet.id": propletID,
                          "propeller.image": execution.start.image]
        let failure = result.state == .completed ? nil : (result.error ?? result.exitCode.map { "exit code \($0)" } ?? result.state.rawValue)
        let attempt = traces.record("attempt", parent: traces.context(carrier), from: start, to: end, kind: .consumer, attributes: attributes, error: failure)
        let running = phases[.running]
        if let pulling = phases[.pulling] {
            traces.record("pull", parent: attempt, from: pulling, to: phases[.unpacking] ?? running ?? end, attributes: ["propeller.image": execution.start.image])
        }
        if let unpacking = phases[.unpacking] {
            traces.record("unpack", parent: attempt, from: unpacking, to: running ?? end)
        }
        if let running {
            var runAttributes = ["propeller.task.state": result.state.rawValue]
            if let code = result.exitCode { runAttributes["process.exit.code"] = String(code) }
            traces.record("run", parent: attempt, from: running, to: end, attributes: runAttributes, error: failure)
        }
        var traced = result
        traced.trace = traces.carrier(attempt)
        return traced
    }
}
