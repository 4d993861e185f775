import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// A small OTLP/HTTP receiver (JSON encoding): each request's body as one line of a file.
struct OTLPReceiver {
    static let script = #"""
import gzip, http.server, json, signal, sys
# The test process's ignored or blocked SIGTERM is inherited: this one ends on it.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
out = open(sys.argv[2], "a")
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        out.write(json.dumps({"path": self.path, "content_type": self.headers.get("Content-Type"), "body": json.loads(body)}) + "\n")
        out.flush()
        answer = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""#
    let port: Int
    let file: String
    let process: DaemonProcess

    init(directory: String) throws {
        port = try freeLoopbackPort()
        file = directory + "/otlp-\(port).jsonl"
        process = try DaemonProcess("/usr/bin/python3", ["-c", Self.script, String(port), file], logPath: directory + "/otlp-\(port).log")
        for _ in 0..<250 {
            if canConnect(port: port) { break }
            usleep(20_000)
        }
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Every span received so far, with its service's name.
    func spans() -> [[String: Any]] {
        var spans: [[String: Any]] = []
        for line in (readFile(file) ?? "").split(separator: "\n") {
            guard let request = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let body = request["body"] as? [String: Any] else { continue }
            for resourceSpans in body["resourceSpans"] as? [[String: Any]] ?? [] {
                let attributes = (resourceSpans["resource"] as? [String: Any])?["attributes"] as? [[String: Any]] ?? []
                let service = attributes.first { $0["key"] as? String == "service.name" }.flatMap { ($0["value"] as? [String: Any])?["stringValue"] as? String }
                for scope in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                    for var span in scope["spans"] as? [[String: Any]] ?? [] {
                        span["service"] = service
                        spans.append(span)
                    }
                }
            }
        }
        return spans
    }
}

/// Traces through swift-otel: one trace per task, from the API request through scheduling, the
/// start message, the proplet's pull, unpack and run, to the result, exported over OTLP/HTTP
/// by the real manager and proplet to a receiver in the test.
@Suite("Tracing", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct TracingTests {
    @Test func aTaskIsOneTraceWithItsSpansInOrder() throws {
        let dir = try TempDirectory("propeller-otlp")
        defer { dir.remove() }
        let receiver = try OTLPReceiver(directory: dir.path)
        defer { receiver.process.stop() }
        let tracing = ["--otlp-endpoint", receiver.url, "--otlp-protocol", "http/json"]
        // Spans leave within 0.2 s.
        let c = try Cluster(proxy: false, managerArguments: tracing, daemonEnvironment: ["OTEL_BSP_SCHEDULE_DELAY": "200"])
        try c.startProplet("p", memory: "2G", extra: ["--image-source", "direct"] + tracing)
        let task = try c.create("traced", command: ["echo", "hi"])
        try c.waitFor(task, state: "completed")

        let names = ["POST /tasks", "schedule", "start message", "attempt", "pull", "unpack", "run", "result"]
        var byName: [String: [String: Any]] = [:]
        try c.waitUntil("the task's spans at the receiver", timeout: 30) {
            let spans = receiver.spans()
            guard let root = spans.first(where: { $0["name"] as? String == "POST /tasks" }), let trace = root["traceId"] as? String else { return false }
            byName = [:]
            for span in spans where span["traceId"] as? String == trace { byName[span["name"] as? String ?? ""] = span }
            return names.allSatisfy { byName[$0] != nil }
        }
        func id(_ name: String) -> String? { byName[name]?["spanId"] as? String }
        func parent(_ name: String) -> String? { byName[name]?["parentSpanId"] as? String }
        func start(_ name: String) -> UInt64 { UInt64(byName[name]?["startTimeUnixNano"] as? String ?? "") ?? 0 }
        // One trace, in a tree: the request, under it the wait and the start message, under that
        // the proplet's attempt with its phases and the manager's handling of its result.
        #expect(parent("schedule") == id("POST /tasks"))
        #expect(parent("start message") == id("POST /tasks"))
        #expect(parent("attempt") == id("start message"))
        for phase in ["pull", "unpack", "run", "result"] { #expect(parent(phase) == id("attempt"), "\(phase)") }
        let starts = names.map(start)
        #expect(starts.allSatisfy { $0 > 0 } && starts == starts.sorted(), "in the order they happened: \(zip(names, starts).map { "\($0) \($1)" })")
        #expect(byName["POST /tasks"]?["service"] as? String == "propeller-manager")
        #expect(byName["attempt"]?["service"] as? String == "propeller-proplet")
        #expect(byName["result"]?["service"] as? String == "propeller-manager")
        let attributes = byName["attempt"]?["attributes"] as? [[String: Any]] ?? []
        #expect(attributes.contains { $0["key"] as? String == "propeller.task.id" && ($0["value"] as? [String: Any])?["stringValue"] as? String == task })
    }
}

/// `task create --wait` on a terminal: the phase line redrawn with the pull's progress.
@Suite("Waiting on a terminal", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"))
struct WaitProgressTests {
    @Test func aPullShowsItsBytesOnTheWaitLine() throws {
        let c = try Cluster()  // through the proxy, in 64 KiB chunks
        try c.startProplet("p", memory: "2G")
        let environment = ProcessInfo.processInfo.environment.merging(["PROPELLER_MANAGER_URL": "http://127.0.0.1:\(c.managerPorts[0])",
                                                                        "PROPELLER_API_TOKEN": c.token]) { _, b in b }
        let (status, shown) = try runOnTerminal(propellerBinary, ["task", "create", "waited", "--image", c.image, "--start", "--wait", "--", "echo", "done"],
                                                environment: environment)
        #expect(status == 0, "\(shown)")
        #expect(shown.contains("(pulling) ["), "the pull's bar: \(shown)")
        #expect(shown.contains(" / ") && shown.contains("\r\u{1B}[K"), "\(shown)")
        #expect(shown.contains("done"))
    }
}
