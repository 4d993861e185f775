import CoreMetrics
import Prometheus
import PropellerCore
import Synchronization

/// The manager's metrics, instrumented with swift-metrics and exposed by swift-prometheus (text
/// format 0.0.4) from a registry of this manager's own (several managers in one process, as in
/// the tests, do not share one, and nothing is bootstrapped globally).
public final class ManagerMetrics: Sendable {
    /// REST latency buckets, seconds.
    static let buckets: [Duration] = [.milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5)]
    static let requestDuration = "propeller_http_request_duration_seconds"

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let tasks: [TaskState: CoreMetrics.Gauge]
    private let propletsAlive: CoreMetrics.Gauge
    private let propletsDead: CoreMetrics.Gauge
    private let queueLength: CoreMetrics.Gauge
    private let placements: CoreMetrics.Counter
    private let heartbeats: CoreMetrics.Counter
    /// The totals the counters were last brought to (the service counts; a scrape adds the difference).
    private let reported = Mutex<(placements: UInt64, heartbeats: UInt64)>((0, 0))

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [Self.requestDuration: Self.buckets]
        self.factory = factory
        tasks = Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0, CoreMetrics.Gauge(label: "propeller_tasks", dimensions: [("state", $0.rawValue)], factory: factory)) })
        propletsAlive = CoreMetrics.Gauge(label: "propeller_proplets", dimensions: [("status", "alive")], factory: factory)
        propletsDead = CoreMetrics.Gauge(label: "propeller_proplets", dimensions: [("status", "dead")], factory: factory)
        queueLength = CoreMetrics.Gauge(label: "propeller_queue_length", factory: factory)
        placements = CoreMetrics.Counter(label: "propeller_placements_total", factory: factory)
        heartbeats = CoreMetrics.Counter(label: "propeller_heartbeats_total", factory: factory)
    }

    /// One REST request's latency (a histogram per method, route and status).
    func observe(method: String, route: String, status: Int, seconds: Double) {
        CoreMetrics.Timer(label: Self.requestDuration, dimensions: [("method", method), ("route", route), ("status", String(status))], factory: factory)
            .recordNanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// The whole /metrics page, with the task service's figures as of now.
    func render(tasks counts: [TaskState: Int], propletsAlive alive: Int, propletsDead dead: Int, placements placed: UInt64, queueLength queued: Int,
                heartbeats beats: UInt64 = 0) -> String {
        for state in TaskState.allCases { tasks[state]?.record(counts[state] ?? 0) }
        propletsAlive.record(alive)
        propletsDead.record(dead)
        queueLength.record(queued)
        // The service's totals only grow within a term; a new term (a restarted count) starts the
        // counters' increments again from there.
        let (placedBy, beatsBy) = reported.withLock { last -> (UInt64, UInt64) in
            let delta = (placed >= last.placements ? placed - last.placements : placed, beats >= last.heartbeats ? beats - last.heartbeats : beats)
            last = (placed, beats)
            return delta
        }
        if placedBy > 0 { placements.increment(by: Int64(clamping: placedBy)) }
        if beatsBy > 0 { heartbeats.increment(by: Int64(clamping: beatsBy)) }
        return registry.emitToString()
    }
}
