// propeller-bench-scheduler: placements per second of the manager's scheduler + SQLite store.
// Not a test: it prints figures for scripts/bench control-plane.
//
//   propeller-bench-scheduler [--proplets 1000] [--tasks 100000] [--policy binpack] [--dir DIR]
//
// 1. bulk: TASKS pending tasks in the store and PROPLETS alive proplets; one scheduling pass
//    places them all (feasibility + score per task, ledger updates, one transaction with every
//    status change and transition, start messages handed to the bus).
// 2. one by one: 10,000 more tasks created and started through the API path (a transaction
//    for the create+start, one for the placement), as clients submit them.
import Foundation
import Logging
import PropellerCore
import PropellerManager

/// Drops outgoing messages: the benchmark measures scheduling and storage, not the broker.
struct DiscardingBus: ControlBus {
    func send(_ start: StartTask, to propletID: String) {}
    func send(_ stop: StopTask, to propletID: String) {}
    func acknowledge(_ result: TaskAttempt, to propletID: String) {}
    func confirm(_ epoch: PropletEpoch) {}
    func send(_ command: VolumeCommand, to propletID: String) {}
    func send(_ request: OutputRequest, to propletID: String) {}
    func send(_ command: SessionCommand, to propletID: String) {}
    func send(_ command: WorkerCommand, to propletID: String) {}
    func send(_ command: ExecutionCommand, to propletID: String) {}
}

func option(_ name: String, _ fallback: String) -> String {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return fallback }
    return args[i + 1]
}

let propletCount = Int(option("--proplets", "1000")) ?? 1000
let taskCount = Int(option("--tasks", "100000")) ?? 100_000
let policy = SchedulingPolicy(rawValue: option("--policy", "binpack")) ?? .binpack
let dir = option("--dir", NSTemporaryDirectory() + "/propeller-sched-\(getpid())")
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: dir) }

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

let store = try SQLiteStore(path: dir + "/manager.db")
// Proplets of mixed sizes: 8 to 64 cores, 32 to 256 GiB, 64 to 256 task slots.
for i in 0..<propletCount {
    let scale = UInt64(1 << (i % 4))
    let a = PropletAnnouncement(propletId: "proplet-\(i)", name: "p\(i)", version: "bench", labels: ["zone": "z\(i % 3)"],
                                capacity: Capacity(cpuMillis: 8000 * scale, memoryBytes: (32 << 30) * scale, pids: 1 << 20, tasks: 64 * scale),
                                os: "linux", arch: "amd64", cgroupMode: "v2")
    try store.saveProplet(PropletRecord(announcement: a, now: 0))
}
// Tasks of mixed sizes: 0.05 to 0.2 cores, 32 MiB to 512 MiB; one in ten with a zone constraint.
var tasks: [TaskRecord] = []
var transitions: [TaskTransition] = []
tasks.reserveCapacity(taskCount)
for i in 0..<taskCount {
    var spec = TaskSpec(name: "t\(i)", image: "127.0.0.1:5000/app:v1",
                        resources: Resources(cpuMillis: UInt64(50 * (1 + i % 4)), memoryBytes: UInt64(32 << 20) << UInt64(i % 5), pids: 64))
    if i % 10 == 0 { spec.constraints = ["zone": "z\(i % 3)"] }
    var t = TaskRecord(id: "task-\(i)", spec: spec, createdAt: Double(i))
    t.status = .pending
    t.attempt = 1
    tasks.append(t)
    transitions.append(TaskTransition(taskId: t.id, state: .pending, attempt: 1, at: 0, reason: nil))
}
try store.insertTasks(tasks, transitions: transitions)
tasks = []

var config = ManagerConfiguration()
config.policy = policy
var logger = Logger(label: "propeller.bench")
logger.logLevel = .warning  // a log line per placement would measure the terminal
let service = TaskService(store: store, bus: DiscardingBus(), configuration: config, logger: logger)
let clock = ContinuousClock()
// A restarted manager's recovery: the store read and one placement pass over the whole queue.
let bulk = try await clock.measure { try await service.recover() }
let placed = Int(await service.placements)
let left = await service.queueLength
print("recovery + bulk pass (\(policy.rawValue)): \(placed) of \(taskCount) tasks placed on \(propletCount) proplets in \(String(format: "%.3f", seconds(bulk))) s "
      + "= \(Int(Double(placed) / seconds(bulk))) placements/s (\(left) left pending: fleet full)")

// One by one, through create + start, after freeing the fleet: finish every placed task.
let fresh = TaskService(store: try SQLiteStore(path: dir + "/fresh.db"), bus: DiscardingBus(), configuration: config, logger: logger)
for i in 0..<propletCount {
    let scale = UInt64(1 << (i % 4))
    await fresh.handleAnnouncement(PropletAnnouncement(propletId: "proplet-\(i)", name: "p\(i)", version: "bench", labels: [:],
                                                       capacity: Capacity(cpuMillis: 8000 * scale, memoryBytes: (32 << 30) * scale, pids: 1 << 20, tasks: 64 * scale),
                                                       os: "linux", arch: "amd64", cgroupMode: "v2"))
}
let single = 10_000
var failures = 0
let oneByOne = await clock.measure {
    for i in 0..<single {
        let spec = TaskSpec(name: "s\(i)", image: "127.0.0.1:5000/app:v1", resources: Resources(cpuMillis: 100, memoryBytes: 128 << 20))
        do {
            let t = try await fresh.create(spec, start: true)
            if t.state != .scheduled { failures += 1 }
        } catch {
            failures += 1
        }
    }
}
print("one by one (create+start, then placement: 2 transactions each): \(single) tasks in \(String(format: "%.3f", seconds(oneByOne))) s "
      + "= \(Int(Double(single) / seconds(oneByOne))) placements/s (\(failures) not placed)")
