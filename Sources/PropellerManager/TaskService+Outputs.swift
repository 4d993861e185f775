import Foundation
import PropellerCore

/// A task's `--output` directory, kept on its proplet and fetched through the manager: the
/// request goes to the proplet on its own topic, the answers come back in order.
extension TaskService {
    /// The answers to a request for `taskID`'s outputs: the listing (no `path`) or one file in
    /// chunks. An error when the task has none, has not ended, did not keep them, or its
    /// proplet is away.
    public func outputs(of taskID: String, path: String?) throws -> AsyncThrowingStream<OutputReply, any Error> {
        let t = try task(taskID)
        guard t.spec.output != nil else { throw APIError.notFound("task \(taskID) has no output directory (task create --output /PATH)") }
        guard let result = t.result, t.state.isTerminal else { throw APIError.conflict("task \(taskID) has not ended: its outputs are kept when it ends") }
        guard let summary = result.outputs else { throw APIError.notFound("task \(taskID) ended before its output directory existed") }
        guard summary.kept else { throw APIError.conflict("task \(taskID)'s outputs were not kept: \(summary.reason ?? "over the limit")") }
        let proplet = result.propletId
        guard state.proplets[proplet]?.alive == true else { throw APIError(status: 503, "proplet \(proplet), which keeps task \(taskID)'s outputs, is away") }
        try requireLease()
        let id = UUID().uuidString
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: OutputReply.self)
        outputRequests[id] = (continuation, .now)
        continuation.onTermination = { [weak self] _ in Task { await self?.forgetOutputRequest(id) } }
        bus.send(OutputRequest(requestId: id, taskId: taskID, attempt: result.attempt, path: path), to: proplet)
        // The proplet may be gone or the broker may drop the answer: silence ends the request.
        Task { [weak self] in
            while let self, await self.outputRequestIsWaiting(id, silentFor: Self.outputSilence) == false {
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return stream
    }

    static let outputSilence = Duration.seconds(20)

    /// Whether request `id` still waits; one silent for `silence` is ended with an error.
    func outputRequestIsWaiting(_ id: String, silentFor silence: Duration) -> Bool? {
        guard let request = outputRequests[id] else { return nil }
        guard ContinuousClock.now - request.heard < silence else {
            request.continuation.finish(throwing: APIError(status: 504, "the proplet did not answer within \(DurationParsing.format(silence))"))
            outputRequests[id] = nil
            return nil
        }
        return false
    }

    /// An answer from a proplet: to the request waiting for it (in order; a gap ends it).
    func handleOutputReply(_ reply: OutputReply) {
        guard let continuation = outputRequests[reply.requestId]?.continuation else { return }
        outputRequests[reply.requestId]?.heard = .now
        if let error = reply.error {
            continuation.finish(throwing: APIError.notFound(error))
            outputRequests[reply.requestId] = nil
            return
        }
        continuation.yield(reply)
        if reply.last {
            continuation.finish()
            outputRequests[reply.requestId] = nil
        }
    }

    func forgetOutputRequest(_ id: String) { outputRequests[id] = nil }
}
