import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Prometheus's client library for Python, whose text parser checks the exposition.
enum PrometheusParser {
    static var isInstalled: Bool { (try? runProcess("/usr/bin/python3", ["-c", "import prometheus_client.parser"], timeout: 30).status) == 0 }

    /// Parses the exposition on stdin with `text_string_to_metric_families` and prints, as JSON,
    /// each family's type and samples; exits non-zero when the text does not parse or a histogram
    /// is inconsistent (buckets not cumulative, +Inf not the count).
    static let script = #"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {"type": family.type, "samples": [[s.name, s.labels, s.value] for s in family.samples]}
    if family.type == "histogram":
        series = {}
        for s in family.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"buckets": [], "count": None})
            if s.name.endswith("_bucket"):
                series[key]["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                series[key]["count"] = s.value
        for key, h in series.items():
            buckets = sorted(h["buckets"])
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), "buckets not cumulative: %s %s" % (key, buckets)
            assert buckets and buckets[-1][0] == float("inf") and buckets[-1][1] == h["count"], "+Inf is not the count: %s" % (key,)
print(json.dumps(out))
"""#
}

/// The manager's /metrics through swift-metrics and swift-prometheus, read by Prometheus's own
/// parser after real work: a real broker, registry, manager and proplet.
@Suite("Metrics", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"),
       .enabled(if: PrometheusParser.isInstalled, "requires python3-prometheus-client (scripts/setup installs it)"))
struct MetricsTests {
    @Test func theExpositionParsesAndCountsWhatHappened() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("m", memory: "2G", extra: ["--image-source", "direct"])
        let id = try c.create("counted", command: ["echo", "hi"])
        try c.waitFor(id, state: "completed")
        _ = try c.cli(["task", "list"])
        _ = try c.cli(["task", "get", "no-such-task"])

        let scrape = try runProcess("/usr/bin/curl", ["-sf", "-H", "Authorization: Bearer \(c.token)", "http://127.0.0.1:\(c.managerPorts[0])/metrics"], timeout: 30)
        #expect(scrape.status == 0)
        let parsed = try runProcess("/usr/bin/python3", ["-c", PrometheusParser.script], stdin: scrape.stdout, timeout: 60)
        #expect(parsed.status == 0, "\(String(decoding: parsed.stderr, as: UTF8.self))\n\(String(decoding: scrape.stdout, as: UTF8.self))")
        let families = try #require(try JSONSerialization.jsonObject(with: parsed.stdout) as? [String: [String: Any]])
        func samples(_ family: String) -> [[Any]] { families[family]?["samples"] as? [[Any]] ?? [] }
        func value(_ family: String, _ labels: [String: String] = [:]) -> Double? {
            samples(family).first { ($0[1] as? [String: String]).map { l in labels.allSatisfy { l[$0.key] == $0.value } } ?? false }?[2] as? Double
        }

        #expect(families["propeller_tasks"]?["type"] as? String == "gauge")
        #expect(value("propeller_tasks", ["state": "completed"]) ?? 0 >= 1)
        #expect(families["propeller_placements"]?["type"] as? String == "counter")  // the parser drops `_total`
        #expect(value("propeller_placements") ?? 0 >= 1)
        #expect(value("propeller_heartbeats") ?? 0 >= 1)
        #expect(value("propeller_proplets", ["status": "alive"]) == 1)
        #expect(families["propeller_http_request_duration_seconds"]?["type"] as? String == "histogram")
        let notFound = samples("propeller_http_request_duration_seconds").filter {
            ($0[0] as? String) == "propeller_http_request_duration_seconds_count" && ($0[1] as? [String: String])?["status"] == "404"
        }
        #expect(!notFound.isEmpty, "the 404 of an unknown task is counted")
        // Every manager metric the Grafana dashboard queries exists (proxy ones: ProxyTests).
        let dashboard = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                                   .appendingPathComponent("scripts/grafana/propeller.json").path, encoding: .utf8)
        #expect((try? JSONSerialization.jsonObject(with: Data(dashboard.utf8))) != nil, "the dashboard is JSON")
        let exposition = String(decoding: scrape.stdout, as: UTF8.self)
        let queried = Set(dashboard.matches(of: /propeller_[a-z_]+/).map { String($0.output) }.filter { !$0.hasPrefix("propeller_proxy_") && !$0.hasPrefix("propeller_proplet_") })
        #expect(queried.count >= 5)
        for name in queried { #expect(exposition.contains(name), "the dashboard queries \(name), which /metrics lacks") }
        try c.waitForEnd(id)
    }

    /// A proplet's own /metrics (`--http`): what it runs, how starts went and ended, parsed by
    /// Prometheus's parser; every proplet metric the dashboard queries is there.
    @Test func aPropletsExpositionCountsItsWork() throws {
        let c = try Cluster(proxy: false)
        let port = try freeLoopbackPort()
        try c.startProplet("m", memory: "2G", extra: ["--image-source", "direct", "--http", "127.0.0.1:\(port)", "--stats-interval", "300ms"])
        let done = try c.create("done", command: ["echo", "hi"])
        try c.waitFor(done, state: "completed")
        let failed = try c.create("failed", command: ["sh", "-c", "exit 3"])
        try c.waitFor(failed, state: "failed")
        let busy = try c.create("busy", command: ["sh", "-c", "while :; do :; done"])
        try c.waitFor(busy, state: "running")
        usleep(1_500_000)

        let health = try runProcess("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(port)/health"], timeout: 30)
        #expect(String(decoding: health.stdout, as: UTF8.self).contains(#""broker":"connected""#))
        let scrape = try runProcess("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(port)/metrics"], timeout: 30)
        #expect(scrape.status == 0)
        let parsed = try runProcess("/usr/bin/python3", ["-c", PrometheusParser.script], stdin: scrape.stdout, timeout: 60)
        #expect(parsed.status == 0, "\(String(decoding: parsed.stderr, as: UTF8.self))\n\(String(decoding: scrape.stdout, as: UTF8.self))")
        let families = try #require(try JSONSerialization.jsonObject(with: parsed.stdout) as? [String: [String: Any]])
        func value(_ family: String, _ labels: [String: String] = [:], sample: String? = nil) -> Double? {
            (families[family]?["samples"] as? [[Any]] ?? []).first { s in
                (sample == nil || s[0] as? String == sample) && ((s[1] as? [String: String]).map { l in labels.allSatisfy { l[$0.key] == $0.value } } ?? false)
            }?[2] as? Double
        }
        #expect(value("propeller_proplet_tasks_running") == 1)
        #expect(value("propeller_proplet_attempts_accepted") == 3)
        #expect(value("propeller_proplet_attempts_ended", ["state": "completed"]) == 1)
        #expect(value("propeller_proplet_attempts_ended", ["state": "failed"]) == 1)
        #expect(value("propeller_proplet_image_pulls") ?? 0 >= 1)
        #expect(families["propeller_proplet_start_duration_seconds"]?["type"] as? String == "histogram")
        #expect(value("propeller_proplet_start_duration_seconds", sample: "propeller_proplet_start_duration_seconds_count") == 3)
        #expect(value("propeller_proplet_broker_connected") == 1)
        #expect(value("propeller_proplet_capacity", ["resource": "memory_bytes"]) == Double(2 << 30))
        #expect(value("propeller_proplet_task_cpu_cores") ?? 0 > 0.5, "the busy task's CPU")

        let dashboard = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                                   .appendingPathComponent("scripts/grafana/propeller.json").path, encoding: .utf8)
        let exposition = String(decoding: scrape.stdout, as: UTF8.self)
        let queried = Set(dashboard.matches(of: /propeller_proplet_[a-z_]+/).map { String($0.output) })
        #expect(queried.count >= 3)
        for name in queried { #expect(exposition.contains(name), "the dashboard queries \(name), which the proplet's /metrics lacks") }
        _ = try c.cli(["task", "stop", busy, "--grace", "0"])
        try c.waitForEnd(busy)
    }
}
