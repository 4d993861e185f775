import PropellerCore
import Synchronization

/// HTTP latency histograms per route, rendered with the task service's gauges as Prometheus
/// text (exposition format 0.0.4).
public final class ManagerMetrics: Sendable {
    static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

    struct Histogram {
        var counts = [UInt64](repeating: 0, count: ManagerMetrics.buckets.count)
        var count: UInt64 = 0
        var sum: Double = 0
    }

    struct Key: Hashable, Comparable {
        var method: String
        var route: String
        var status: Int
        static func < (a: Key, b: Key) -> Bool { (a.route, a.method, a.status) < (b.route, b.method, b.status) }
    }

    private let histograms = Mutex<[Key: Histogram]>([:])

    public init() {}

    func observe(method: String, route: String, status: Int, seconds: Double) {
        histograms.withLock { h in
            var entry = h[Key(method: method, route: route, status: status)] ?? Histogram()
            for (i, bound) in Self.buckets.enumerated() where seconds <= bound { entry.counts[i] += 1 }
            entry.count += 1
            entry.sum += seconds
            h[Key(method: method, route: route, status: status)] = entry
        }
    }

    /// The whole /metrics page.
    func render(tasks: [TaskState: Int], propletsAlive: Int, propletsDead: Int, placements: UInt64, queueLength: Int, heartbeats: UInt64 = 0) -> String {
        var out = ""
        out += "# HELP propeller_tasks Tasks by state.\n# TYPE propeller_tasks gauge\n"
        for s in TaskState.allCases { out += "propeller_tasks{state=\"\(s.rawValue)\"} \(tasks[s] ?? 0)\n" }
        out += "# HELP propeller_proplets Proplets known to the manager.\n# TYPE propeller_proplets gauge\n"
        out += "propeller_proplets{status=\"alive\"} \(propletsAlive)\npropeller_proplets{status=\"dead\"} \(propletsDead)\n"
        out += "# HELP propeller_placements_total Task attempts placed on a proplet.\n# TYPE propeller_placements_total counter\n"
        out += "propeller_placements_total \(placements)\n"
        out += "# HELP propeller_heartbeats_total Proplet heartbeats handled.\n# TYPE propeller_heartbeats_total counter\n"
        out += "propeller_heartbeats_total \(heartbeats)\n"
        out += "# HELP propeller_queue_length Tasks pending placement.\n# TYPE propeller_queue_length gauge\n"
        out += "propeller_queue_length \(queueLength)\n"
        out += "# HELP propeller_http_request_duration_seconds REST API latency by route.\n# TYPE propeller_http_request_duration_seconds histogram\n"
        let snapshot = histograms.withLock { $0 }
        for key in snapshot.keys.sorted() {
            guard let h = snapshot[key] else { continue }
            let labels = "method=\"\(key.method)\",route=\"\(key.route)\",status=\"\(key.status)\""
            for (i, bound) in Self.buckets.enumerated() {
                out += "propeller_http_request_duration_seconds_bucket{\(labels),le=\"\(bound)\"} \(h.counts[i])\n"
            }
            out += "propeller_http_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(h.count)\n"
            out += "propeller_http_request_duration_seconds_sum{\(labels)} \(h.sum)\n"
            out += "propeller_http_request_duration_seconds_count{\(labels)} \(h.count)\n"
        }
        return out
    }
}
