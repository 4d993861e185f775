import CoreMetrics
import Prometheus
import PropellerCore
import Synchronization

/// A proplet's own metrics (`propeller proplet --http HOST:PORT`, `GET /metrics`), through
/// swift-metrics into a swift-prometheus registry of its own: what it runs, how long starts take
/// from the start message to the running container, how attempts end, images pulled and
/// unpacked, the usage of its tasks, its broker connection and its result outbox.
public final class PropletMetrics: Sendable {
    static let startDuration = "propeller_proplet_start_duration_seconds"
    /// Start latency buckets: a warm start is milliseconds, a pull can take minutes.
    static let buckets: [Duration] = [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                      .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300)]

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let running: CoreMetrics.Gauge
    private let workers: CoreMetrics.Gauge
    private let sessions: CoreMetrics.Gauge
    private let outbox: CoreMetrics.Gauge
    private let connected: CoreMetrics.Gauge
    private let cpuCores: CoreMetrics.Gauge
    private let memoryBytes: CoreMetrics.Gauge
    private let capacity: [(String, CoreMetrics.Gauge)]
    private let accepted: CoreMetrics.Counter
    private let pulls: CoreMetrics.Counter
    private let unpacks: CoreMetrics.Counter
    private let sessionsOpened: CoreMetrics.Counter

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [Self.startDuration: Self.buckets]
        self.factory = factory
        running = CoreMetrics.Gauge(label: "propeller_proplet_tasks_running", factory: factory)
        workers = CoreMetrics.Gauge(label: "propeller_proplet_actor_workers", factory: factory)
        sessions = CoreMetrics.Gauge(label: "propeller_proplet_exec_sessions", factory: factory)
        outbox = CoreMetrics.Gauge(label: "propeller_proplet_outbox_results", factory: factory)
        connected = CoreMetrics.Gauge(label: "propeller_proplet_broker_connected", factory: factory)
        cpuCores = CoreMetrics.Gauge(label: "propeller_proplet_task_cpu_cores", factory: factory)
        memoryBytes = CoreMetrics.Gauge(label: "propeller_proplet_task_memory_bytes", factory: factory)
        capacity = ["cpu_millis", "memory_bytes", "pids", "tasks"].map { ($0, CoreMetrics.Gauge(label: "propeller_proplet_capacity", dimensions: [("resource", $0)], factory: factory)) }
        accepted = CoreMetrics.Counter(label: "propeller_proplet_attempts_accepted_total", factory: factory)
        pulls = CoreMetrics.Counter(label: "propeller_proplet_image_pulls_total", factory: factory)
        unpacks = CoreMetrics.Counter(label: "propeller_proplet_image_unpacks_total", factory: factory)
        sessionsOpened = CoreMetrics.Counter(label: "propeller_proplet_exec_sessions_opened_total", factory: factory)
    }

    func attemptAccepted() { accepted.increment() }

    /// A phase an attempt reached; `running` records the time since it was accepted.
    func phase(_ phase: TaskEvent.Phase, sinceAccepted elapsed: Duration) {
        switch phase {
        case .pulling: pulls.increment()
        case .unpacking: unpacks.increment()
        case .running: CoreMetrics.Timer(label: Self.startDuration, factory: factory).recordNanoseconds(elapsed.clampedNanoseconds)
        case .accepted: break
        }
    }

    /// How an attempt ended.
    func attemptEnded(_ state: TaskState) {
        CoreMetrics.Counter(label: "propeller_proplet_attempts_ended_total", dimensions: [("state", state.rawValue)], factory: factory).increment()
    }

    func sessionOpened() { sessionsOpened.increment() }

    /// What the page's gauges show, read when it is scraped.
    struct Snapshot: Sendable {
        var running = 0
        var workers = 0
        var sessions = 0
        var outbox = 0
        var connected = false
        var cpuCores: Double = 0
        var memoryBytes: UInt64 = 0
        var capacity = Capacity(cpuMillis: 0, memoryBytes: 0, pids: 0, tasks: 0)
    }

    func render(_ s: Snapshot) -> String {
        running.record(s.running)
        workers.record(s.workers)
        sessions.record(s.sessions)
        outbox.record(s.outbox)
        connected.record(s.connected ? 1 : 0)
        cpuCores.record(s.cpuCores)
        memoryBytes.record(Int64(clamping: s.memoryBytes))
        for (resource, gauge) in capacity {
            switch resource {
            case "cpu_millis": gauge.record(Int64(clamping: s.capacity.cpuMillis))
            case "memory_bytes": gauge.record(Int64(clamping: s.capacity.memoryBytes))
            case "pids": gauge.record(Int64(clamping: s.capacity.pids))
            default: gauge.record(Int64(clamping: s.capacity.tasks))
            }
        }
        return registry.emitToString()
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (seconds < 0 ? .min : .max) : scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}
