// propeller-fleet: many simulated proplets, each a real MQTT session speaking the real protocol
// (announcement, heartbeats with capacity and running tasks, starts, results resent until
// acknowledged), all driven by one thread over libmosquitto's non-threaded API and poll(2);
// and a load of tasks created through the REST API. A benchmark tool, not a test.
//
//   propeller-fleet --mqtt HOST:PORT[,HOST:PORT…] --manager URL --token T --proplets N
//                   [--tasks M] [--concurrency C] [--interval SECONDS] [--task-ms MS] [--settle SECONDS]
//                   [--prefix P] [--events FILE]
//
// A process holds about 3 descriptors per session (the socket and libmosquitto's socket pair), so
// a large fleet is several processes (`--prefix` apart), each writing what it saw to `--events`
// (`C id t` created, `A id t` acknowledged, `S t` started, `H n` heartbeats sent; monotonic
// seconds, the same clock in every process) for `scripts/bench-fleet` to merge. With `--events`,
// the process that creates tasks waits until the manager counts them completed (the results may
// reach other processes), and every process runs until SIGTERM or its settle time.
import AsyncHTTPClient
import CMosquitto
import Foundation
import NIOCore
import PropellerCore

struct Options {
    var brokers: [(String, Int32)] = [("127.0.0.1", 1883)]
    var manager = "http://127.0.0.1:7070"
    var token = ""
    var proplets = 100
    var tasks = 0
    var concurrency = 64
    var interval = 5.0
    var taskMs = 200.0
    var settle = 10.0
    var prefix = "sim"
    var events: String?

    init() {
        var args = CommandLine.arguments.dropFirst()
        while let flag = args.popFirst() {
            let value = args.popFirst() ?? ""
            switch flag {
            case "--mqtt":
                brokers = value.split(separator: ",").map { part in
                    let hp = part.replacingOccurrences(of: "tcp://", with: "").split(separator: ":")
                    return (String(hp[0]), Int32(hp.count > 1 ? String(hp[1]) : "1883") ?? 1883)
                }
            case "--manager": manager = value
            case "--token": token = value
            case "--proplets": proplets = Int(value) ?? proplets
            case "--tasks": tasks = Int(value) ?? tasks
            case "--concurrency": concurrency = Int(value) ?? concurrency
            case "--interval": interval = Double(value) ?? interval
            case "--task-ms": taskMs = Double(value) ?? taskMs
            case "--settle": settle = Double(value) ?? settle
            case "--prefix": prefix = value
            case "--events": events = value
            default: fatalError("unknown option \(flag)")
            }
        }
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// One simulated proplet.
final class SimProplet {
    let id: String
    let handle: OpaquePointer
    var seq: UInt64 = 0
    var nextBeat: Double
    var running: [TaskAttempt: Double] = [:]
    var unacked: [TaskAttempt: (result: TaskResult, sent: Double)] = [:]
    var connected = false

    init(id: String, handle: OpaquePointer, firstBeat: Double) {
        self.id = id
        self.handle = handle
        nextBeat = firstBeat
    }
}

/// Shared between the MQTT thread and the HTTP load.
final class Timings: @unchecked Sendable {
    let lock = NSLock()
    var created: [String: Double] = [:]
    var latencies: [Double] = []
    var firstCreate = Double.infinity
    var lastAck = 0.0
    var starts: [Double] = []
    var acked = 0
    var heartbeatsSent = 0
    var failures = 0
    var acks: [(String, Double)] = []

    func locked<R>(_ body: (Timings) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(self)
    }
}

let options = Options()
let topics = Topics(domain: "propeller", channel: "control")
let timings = Timings()
nonisolated(unsafe) var fleet: [SimProplet] = []
let encoder = WireCoding.encoder()
let decoder = WireCoding.decoder()

func publish<T: Encodable>(_ p: SimProplet, _ topic: String, _ message: T) {
    guard let bytes = try? encoder.encode(message) else { return }
    _ = bytes.withUnsafeBytes { mosquitto_publish(p.handle, nil, topic, Int32($0.count), $0.baseAddress, 1, false) }
}

let capacity = Capacity(cpuMillis: 16_000, memoryBytes: 64 << 30, pids: 65_536, tasks: 64)
func announcement(_ p: SimProplet) -> PropletAnnouncement {
    PropletAnnouncement(propletId: p.id, name: p.id, version: "fleet-sim", labels: ["sim": "true"], capacity: capacity, os: "linux", arch: "amd64", cgroupMode: "v2")
}

func heartbeat(_ p: SimProplet) {
    p.seq += 1
    let running = Array(p.running.keys)
    let memory = UInt64(running.count) * (16 << 20)
    publish(p, topics.report(.alive, from: p.id),
            PropletHeartbeat(propletId: p.id, status: .online, seq: p.seq, announcement: announcement(p),
                             allocated: Resources(cpuMillis: UInt64(running.count) * 100, memoryBytes: memory, pids: UInt64(running.count) * 16),
                             running: running.isEmpty ? nil : running, finished: p.unacked.isEmpty ? nil : Array(p.unacked.keys)))
    timings.locked { $0.heartbeatsSent += 1 }
}

func onMessage(_ p: SimProplet, topic: String, payload: Data) {
    let t = now()
    if topic.hasSuffix("/start"), let start = try? decoder.decode(StartTask.self, from: payload) {
        if p.running[start.ref] == nil && p.unacked[start.ref] == nil {
            p.running[start.ref] = t + options.taskMs / 1000
            timings.locked { $0.starts.append(t) }
        }
    } else if topic.hasSuffix("/stop"), let stop = try? decoder.decode(StopTask.self, from: payload) {
        let ref = TaskAttempt(taskId: stop.taskId, attempt: stop.attempt)
        if p.running.removeValue(forKey: ref) != nil {
            let r = TaskResult(taskId: ref.taskId, attempt: ref.attempt, propletId: p.id, state: .stopped, exitCode: 143)
            p.unacked[ref] = (r, t)
            publish(p, topics.report(.results, from: p.id), r)
        }
    } else if topic.hasSuffix("/ack"), let ack = try? decoder.decode(TaskAttempt.self, from: payload) {
        if p.unacked.removeValue(forKey: ack) != nil {
            timings.locked { m in
                m.acks.append((ack.taskId, t))
                if let c = m.created[ack.taskId] {
                    m.latencies.append(t - c)
                    m.lastAck = max(m.lastAck, t)
                }
                m.acked += 1
            }
        }
    }
}

/// The MQTT side: connect every session, then poll them all.
func runFleet(until stop: @escaping () -> Bool) {
    mosquitto_lib_init()
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    let start = now()
    for i in 0..<options.proplets {
        let id = "\(options.prefix)-\(i)"
        guard let h = mosquitto_new(id, true, UnsafeMutableRawPointer(bitPattern: i + 1)) else { fatalError("mosquitto_new") }
        let p = SimProplet(id: id, handle: h, firstBeat: start + options.interval * Double(i) / Double(max(1, options.proplets)))
        fleet.append(p)
        mosquitto_message_callback_set(h) { _, obj, message in
            guard let obj, let message else { return }
            let m = message.pointee
            let topic = m.topic.map { String(cString: $0) } ?? ""
            let payload = m.payload.map { Data(bytes: $0, count: Int(m.payloadlen)) } ?? Data()
            onMessage(fleet[Int(bitPattern: obj) - 1], topic: topic, payload: payload)
        }
        mosquitto_connect_callback_set(h) { mosq, obj, rc in
            guard let obj, rc == 0 else { return }
            let p = fleet[Int(bitPattern: obj) - 1]
            p.connected = true
            _ = mosquitto_subscribe(mosq, nil, topics.propletInbox(p.id), 1)
            publish(p, topics.report(.create, from: p.id), announcement(p))
        }
        let will = (try? encoder.encode(PropletHeartbeat(propletId: id, status: .offline))) ?? Data()
        _ = will.withUnsafeBytes { mosquitto_will_set(h, topics.report(.alive, from: id), Int32($0.count), $0.baseAddress, 1, false) }
        _ = mosquitto_int_option(h, MOSQ_OPT_TCP_NODELAY, 1)
        let broker = options.brokers[i % options.brokers.count]
        let rc = mosquitto_connect(h, broker.0, broker.1, 120)
        if rc != 0 { FileHandle.standardError.write("connect \(id): \(rc)\n".data(using: .utf8)!) }
    }
    FileHandle.standardError.write("fleet: \(options.proplets) sessions connecting (\(String(format: "%.1f", now() - start)) s)\n".data(using: .utf8)!)
    var lastMisc = 0.0
    var fds = [pollfd](repeating: pollfd(), count: fleet.count)
    while !stop() {
        for (i, p) in fleet.enumerated() {
            let fd = mosquitto_socket(p.handle)
            fds[i] = pollfd(fd: fd, events: Int16(POLLIN) | (mosquitto_want_write(p.handle) ? Int16(POLLOUT) : 0), revents: 0)
        }
        _ = poll(&fds, nfds_t(fds.count), 20)
        for (i, p) in fleet.enumerated() where fds[i].fd >= 0 {
            if fds[i].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 { _ = mosquitto_loop_read(p.handle, 1) }
            if fds[i].revents & Int16(POLLOUT) != 0 { _ = mosquitto_loop_write(p.handle, 1) }
        }
        let t = now()
        for p in fleet {
            for (ref, due) in p.running where due <= t {
                p.running[ref] = nil
                let r = TaskResult(taskId: ref.taskId, attempt: ref.attempt, propletId: p.id, state: .completed, exitCode: 0, stdoutTail: "ok\n")
                p.unacked[ref] = (r, t)
                publish(p, topics.report(.results, from: p.id), r)
            }
            if t >= p.nextBeat {
                p.nextBeat += options.interval
                heartbeat(p)
                // Results not acknowledged for a while are sent again (a new leader may not have them).
                for (ref, u) in p.unacked where t - u.sent > 5 {
                    p.unacked[ref] = (u.result, t)
                    publish(p, topics.report(.results, from: p.id), u.result)
                }
            }
        }
        if t - lastMisc > 0.5 {
            lastMisc = t
            for p in fleet {
                let rc = mosquitto_loop_misc(p.handle)
                if rc == MOSQ_ERR_NO_CONN.rawValue { _ = mosquitto_reconnect(p.handle) }
            }
        }
    }
    for p in fleet { mosquitto_disconnect(p.handle); _ = mosquitto_loop_write(p.handle, 1) }
}

/// The REST side: `tasks` tasks created and started with `concurrency` requests in flight.
func createTasks(_ client: HTTPClient) async {
    let body = """
        {"name":"fleet","image":"127.0.0.1:5000/sim:1","command":["true"],"resources":{"cpu_millis":100,"memory_bytes":16777216,"pids":16},"start":true}
        """
    await withTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
            guard next < options.tasks else { return }
            next += 1
            group.addTask {
                var request = HTTPClientRequest(url: options.manager + "/tasks")
                request.method = .POST
                request.headers.add(name: "Authorization", value: "Bearer \(options.token)")
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: body))
                let sent = now()
                for _ in 0..<50 {
                    do {
                        let response = try await client.execute(request, timeout: .seconds(60))
                        let data = try await response.body.collect(upTo: 1 << 20)
                        if response.status.code == 201,
                           let object = try? JSONSerialization.jsonObject(with: Data(data.readableBytesView)) as? [String: Any], let id = object["id"] as? String {
                            timings.locked { m in
                                m.created[id] = sent
                                m.firstCreate = min(m.firstCreate, sent)
                            }
                            return
                        }
                    } catch {}
                    try? await Task.sleep(for: .milliseconds(200))
                }
                timings.locked { $0.failures += 1 }
            }
        }
        for _ in 0..<options.concurrency { add() }
        while await group.next() != nil { add() }
    }
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
}

/// The manager's count of completed tasks (nil when it cannot be read).
func completedTasks(_ client: HTTPClient) async -> Int? {
    var request = HTTPClientRequest(url: options.manager + "/metrics")
    request.headers.add(name: "Authorization", value: "Bearer \(options.token)")
    guard let response = try? await client.execute(request, timeout: .seconds(10)),
          let body = try? await response.body.collect(upTo: 16 << 20) else { return nil }
    let line = String(buffer: body).split(separator: "\n").first { $0.hasPrefix("propeller_tasks{state=\"completed\"} ") }
    return line.flatMap { Int($0.split(separator: " ").last ?? "") }
}

/// SIGTERM or SIGINT: stop and write what was seen.
nonisolated(unsafe) var terminated: sig_atomic_t = 0
signal(SIGTERM) { _ in terminated = 1 }
signal(SIGINT) { _ in terminated = 1 }

let finished = Locked(false)
let thread = Thread { runFleet { finished.withLock { $0 } } }
thread.stackSize = 8 << 20
thread.start()
let settled = now() + options.settle
while now() < settled && terminated == 0 { try await Task.sleep(for: .milliseconds(100)) }
let client = HTTPClient(eventLoopGroupProvider: .singleton)
/// Tasks the manager counted completed during the load (with `--events`).
var storeCompleted: Int?
if options.tasks > 0 && terminated == 0 {
    let before = options.events == nil ? 0 : await completedTasks(client) ?? 0
    await createTasks(client)
    let deadline = now() + 120
    while now() < deadline && terminated == 0 {
        let expected = options.tasks - timings.locked { $0.failures }
        if options.events == nil {
            if timings.locked({ $0.latencies.count >= expected }) { break }
        } else if let done = await completedTasks(client) {
            storeCompleted = done - before
            if done - before >= expected {
                try await Task.sleep(for: .seconds(3))  // the last acknowledgements
                break
            }
        }
        try await Task.sleep(for: .milliseconds(100))
    }
}
try await client.shutdown().get()
finished.withLock { $0 = true }
try await Task.sleep(for: .milliseconds(300))
let (startTimes, latencies, heartbeatsSent, failures, span) = timings.locked { ($0.starts, $0.latencies, $0.heartbeatsSent, $0.failures, $0.lastAck - $0.firstCreate) }
if let path = options.events {
    var lines = timings.locked { m in
        m.created.map { "C \($0.key) \($0.value)" } + m.acks.map { "A \($0.0) \($0.1)" } + m.starts.map { "S \($0)" } + ["H \(m.heartbeatsSent)"]
    }
    lines.append("")
    try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
}
let starts = startTimes.sorted()
var maxGap = 0.0
for (a, b) in zip(starts, starts.dropFirst()) { maxGap = max(maxGap, b - a) }
print("""
    fleet: proplets=\(options.proplets) interval=\(options.interval)s heartbeats_sent=\(heartbeatsSent)
    fleet: tasks=\(options.tasks) completed=\(latencies.count) store_completed=\(storeCompleted.map(String.init) ?? "-") failed_creates=\(failures) \
    placements_per_s=\(options.tasks > 0 && span > 0 ? String(format: "%.0f", Double(latencies.count) / span) : "-") \
    p50_ms=\(String(format: "%.1f", percentile(latencies, 0.5) * 1000)) p99_ms=\(String(format: "%.1f", percentile(latencies, 0.99) * 1000)) \
    max_gap_between_starts_ms=\(String(format: "%.0f", maxGap * 1000))
    """)
