import Foundation
import PropellerCore

/// A task's or a proplet's recent usage samples (``UsageReport``).
struct UsageHistory: Sendable {
    /// Samples kept per task or proplet: five minutes at the default interval of a second.
    static let limit = 300
    var propletID: String
    var attempt: Int
    var samples: [UsageSample] = []
    var lastHeard: ContinuousClock.Instant

    mutating func append(_ sample: UsageSample, at now: ContinuousClock.Instant) {
        samples.append(sample)
        if samples.count > Self.limit { samples.removeFirst(samples.count - Self.limit) }
        lastHeard = now
    }
}

/// What `GET /tasks/{id}/stats` and `GET /proplets/{id}/stats` answer.
public struct UsageView: Codable, Sendable {
    public var taskId: String?
    public var propletId: String?
    public var attempt: Int?
    public var samples: [UsageSample]
}

/// Live usage: telemetry, not state. It is kept in the leader's memory (the console's graphs,
/// `task stats`), never in the store and never through the state machine: a new leader starts
/// with empty histories, and a lost report is only a gap.
extension TaskService {
    /// How long the samples of an ended task (or of a silent proplet) are kept.
    static let usageKeptFor: Duration = .seconds(600)

    /// Keeps the samples of the tasks the report's proplet runs as far as the manager knows (a
    /// report about another attempt, or a task placed elsewhere, is dropped) and its total.
    public func handleUsage(_ report: UsageReport) {
        let now = ContinuousClock.now
        guard state.proplets[report.propletId] != nil else { return }
        for usage in report.tasks {
            guard let t = state.active[usage.taskId], t.attempt == usage.attempt, t.assignedProplet == report.propletId else { continue }
            var history = taskUsage[usage.taskId].flatMap { $0.attempt == usage.attempt ? $0 : nil }
                ?? UsageHistory(propletID: report.propletId, attempt: usage.attempt, lastHeard: now)
            history.append(usage.sample, at: now)
            taskUsage[usage.taskId] = history
            for follower in (usageFollowers[usage.taskId] ?? [:]).values { follower.yield(usage.sample) }
        }
        var total = propletUsage[report.propletId] ?? UsageHistory(propletID: report.propletId, attempt: 0, lastHeard: now)
        total.append(report.total, at: now)
        propletUsage[report.propletId] = total
        if now - usagePruned > .seconds(60) {
            usagePruned = now
            taskUsage = taskUsage.filter { state.active[$0.key] != nil || now - $0.value.lastHeard < Self.usageKeptFor }
            propletUsage = propletUsage.filter { state.proplets[$0.key] != nil && now - $0.value.lastHeard < Self.usageKeptFor }
        }
    }

    /// The recent samples of task `id` (its current or last attempt).
    public func usage(ofTask id: String) throws -> UsageView {
        let t = try task(id)
        let history = taskUsage[id]
        return UsageView(taskId: id, propletId: history?.propletID ?? t.assignedProplet, attempt: history?.attempt ?? t.attempt, samples: history?.samples ?? [])
    }

    /// The recent totals of proplet `id`.
    public func usage(ofProplet id: String) throws -> UsageView {
        _ = try proplet(id)
        return UsageView(propletId: id, samples: propletUsage[id]?.samples ?? [])
    }

    /// The samples so far, then each new one until the task ends.
    public func followUsage(_ id: String) throws -> AsyncStream<UsageSample> {
        let t = try task(id)
        let (stream, continuation) = AsyncStream.makeStream(of: UsageSample.self, bufferingPolicy: .bufferingNewest(UsageHistory.limit))
        for sample in taskUsage[id]?.samples ?? [] { continuation.yield(sample) }
        if state.active[t.id] == nil {
            continuation.finish()
        } else {
            let key = UUID()
            usageFollowers[id, default: [:]][key] = continuation
            continuation.onTermination = { [weak self] _ in Task { await self?.forgetUsageFollower(of: id, key) } }
        }
        return stream
    }

    private func forgetUsageFollower(of id: String, _ key: UUID) {
        usageFollowers[id]?[key] = nil
        if usageFollowers[id]?.isEmpty == true { usageFollowers[id] = nil }
    }
}
