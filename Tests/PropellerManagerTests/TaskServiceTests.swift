import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Synchronization
import Testing

/// Records what the task service would publish. A stand-in for the MQTT transport only; the
/// end-to-end tests run the real broker.
final class RecordingBus: ControlBus, ActorBus {
    let starts = Mutex<[(StartTask, String)]>([])
    let workerCommands = Mutex<[(WorkerCommand, String)]>([])
    let executionCommands = Mutex<[(ExecutionCommand, String)]>([])
    let stops = Mutex<[(StopTask, String)]>([])
    let acks = Mutex<[TaskAttempt]>([])
    let epochs = Mutex<[PropletEpoch]>([])

    func send(_ start: StartTask, to propletID: String) { starts.withLock { $0.append((start, propletID)) } }
    func send(_ stop: StopTask, to propletID: String) { stops.withLock { $0.append((stop, propletID)) } }
    func acknowledge(_ result: TaskAttempt, to propletID: String) { acks.withLock { $0.append(result) } }
    func confirm(_ epoch: PropletEpoch) { epochs.withLock { $0.append(epoch) } }
    let volumeCommands = Mutex<[(VolumeCommand, String)]>([])
    func send(_ command: VolumeCommand, to propletID: String) { volumeCommands.withLock { $0.append((command, propletID)) } }
    let outputRequests = Mutex<[(OutputRequest, String)]>([])
    let sessionCommands = Mutex<[(SessionCommand, String)]>([])
    func send(_ request: OutputRequest, to propletID: String) { outputRequests.withLock { $0.append((request, propletID)) } }
    func send(_ command: WorkerCommand, to propletID: String) { workerCommands.withLock { $0.append((command, propletID)) } }
    func send(_ command: ExecutionCommand, to propletID: String) { executionCommands.withLock { $0.append((command, propletID)) } }
    func send(_ command: SessionCommand, to propletID: String) { sessionCommands.withLock { $0.append((command, propletID)) } }

    var startedOn: [String: String] { starts.withLock { Dictionary($0.map { ($0.0.taskId, $0.1) }, uniquingKeysWith: { _, b in b }) } }
}

func announcement(_ id: String, memory: UInt64, tasks: UInt64 = 8) -> PropletAnnouncement {
    PropletAnnouncement(propletId: id, name: id, version: "test", labels: [:], capacity: Capacity(cpuMillis: 2000, memoryBytes: memory, pids: 4096, tasks: tasks),
                        os: "linux", arch: "amd64", cgroupMode: "v1")
}

@Suite("Task service")
final class TaskServiceTests: Sendable {
    static let gib: UInt64 = 1 << 30
    let dir: TempDirectory
    let bus = RecordingBus()

    init() throws { dir = try TempDirectory("propeller-service") }
    deinit { dir.remove() }  // each test has its own instance and directory

    func service(interval: Duration = .seconds(5)) throws -> TaskService {
        var config = ManagerConfiguration()
        config.livenessInterval = interval
        return TaskService(store: try SQLiteStore(path: dir.path + "/manager.db"), bus: bus, configuration: config)
    }

    func spec(_ name: String, memory: UInt64) -> TaskSpec { TaskSpec(name: name, image: "127.0.0.1:5000/app", resources: Resources(memoryBytes: memory)) }

    func complete(_ s: TaskService, _ id: String, on proplet: String, attempt: Int = 1, state: TaskState = .completed, exit: Int32 = 0) async {
        await s.handleResult(TaskResult(taskId: id, attempt: attempt, propletId: proplet, state: state, exitCode: exit, stdoutTail: "out"))
    }

    @Test func aTaskLandsOnThePropletThatHasRoomAndWaitsWhenNoneHas() async throws {
        let s = try service()
        await s.handleAnnouncement(announcement("small", memory: 2 * Self.gib))
        await s.handleAnnouncement(announcement("big", memory: 4 * Self.gib))
        let t1 = try await s.create(spec("three", memory: 3 * Self.gib), start: true)
        #expect(bus.startedOn[t1.id] == "big")
        #expect(try await s.task(t1.id).state == .scheduled)
        let t2 = try await s.create(spec("two", memory: 2 * Self.gib), start: true)
        #expect(bus.startedOn[t2.id] == "small")
        let t3 = try await s.create(spec("waits", memory: 2 * Self.gib), start: true)
        let waiting = try await s.task(t3.id)
        #expect(waiting.state == .pending)
        #expect(waiting.reason?.contains("capacity") == true)
        #expect(await s.queueLength == 1)
        // Capacity frees: the pending task is placed at once.
        await complete(s, t2.id, on: "small")
        #expect(bus.startedOn[t3.id] == "small")
        #expect(try await s.task(t2.id).state == .completed)
        #expect(bus.acks.withLock { $0 } == [TaskAttempt(taskId: t2.id, attempt: 1)])
        #expect(try await s.history(t2.id).map(\.state) == [.created, .pending, .scheduled, .completed])
    }

    /// Usage samples are kept only for the attempt a proplet really runs: another proplet's
    /// report about the task, or one about an old attempt, is dropped; the history is bounded.
    @Test func usageSamplesAreKeptOnlyFromThePropletThatRunsTheAttempt() async throws {
        let s = try service()
        await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
        await s.handleAnnouncement(announcement("other", memory: Self.gib / 2))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        func report(_ proplet: String, attempt: Int, memory: UInt64, at: Double) -> UsageReport {
            let sample = UsageSample(at: at, cpuCores: 0.5, memoryBytes: memory, pids: 1)
            return UsageReport(propletId: proplet, tasks: [TaskUsageSample(taskId: t.id, attempt: attempt, sample: sample)], total: sample)
        }
        await s.handleUsage(report("p", attempt: 1, memory: 100, at: 1))
        await s.handleUsage(report("other", attempt: 1, memory: 999, at: 2))
        await s.handleUsage(report("p", attempt: 2, memory: 999, at: 3))
        await s.handleUsage(report("unknown", attempt: 1, memory: 999, at: 4))
        let kept = try await s.usage(ofTask: t.id)
        #expect(kept.samples.map(\.memoryBytes) == [100] && kept.propletId == "p" && kept.attempt == 1)
        #expect(try await s.usage(ofProplet: "other").samples.count == 1, "a proplet's own total is kept")
        await #expect(throws: APIError.self) { try await s.usage(ofProplet: "unknown") }
        await #expect(throws: APIError.self) { try await s.usage(ofTask: "nope") }
        for i in 0..<(UsageHistory.limit + 20) { await s.handleUsage(report("p", attempt: 1, memory: UInt64(i), at: Double(10 + i))) }
        let bounded = try await s.usage(ofTask: t.id).samples
        #expect(bounded.count == UsageHistory.limit && bounded.last?.memoryBytes == UInt64(UsageHistory.limit + 19))
    }

    @Test func aTaskThatCanNeverFitFailsAtOnce() async throws {
        let s = try service()
        await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
        let t = try await s.create(spec("huge", memory: 64 * Self.gib), start: true)
        #expect(t.state == .failed)
        #expect(t.reason?.contains("could ever hold") == true)
    }

    @Test func eventsMoveATaskToRunningAndDuplicatesAreHarmless() async throws {
        let s = try service()
        await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .pulling, at: 1))
        #expect(try await s.task(t.id).phase == "pulling")
        await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .running, at: 2))
        #expect(try await s.task(t.id).state == .running)
        // A result from another proplet is ignored; the right one twice is stored once.
        await complete(s, t.id, on: "intruder")
        #expect(try await s.task(t.id).state == .running)
        await complete(s, t.id, on: "p", exit: 0)
        await complete(s, t.id, on: "p", exit: 0)
        #expect(try await s.task(t.id).state == .completed)
        #expect(try await s.history(t.id).filter { $0.state == .completed }.count == 1)
        #expect(try await s.proplet("p").allocated == .zero)
    }

    @Test func aSilentPropletIsDisconnectedThenLostAndItsTasksFailOrAreRequeued() async throws {
        let s = try service(interval: .milliseconds(100))
        await s.handleAnnouncement(announcement("doomed", memory: 4 * Self.gib))
        let plain = try await s.create(spec("plain", memory: Self.gib), start: true)
        var retrying = spec("retrying", memory: Self.gib)
        retrying.restartPolicy = RestartPolicy(mode: .onFailure, maxAttempts: 2)
        let r = try await s.create(retrying, start: true)
        // Heard from now on (the creates above wait for the store, which may take a while).
        await s.handleAnnouncement(announcement("doomed", memory: 4 * Self.gib))
        let start = ContinuousClock.now
        await s.checkLiveness(now: start + .milliseconds(250))
        #expect(try await s.proplet("doomed").alive)
        // Silent past three intervals: disconnected, its tasks unknown (they may still run).
        await s.checkLiveness(now: start + .milliseconds(350))
        #expect(try await s.proplet("doomed").state == "disconnected")
        #expect(try await s.task(plain.id).state == .unknown)
        #expect(try await s.task(r.id).state == .unknown)
        await s.handleAnnouncement(announcement("fresh", memory: 4 * Self.gib))
        #expect(bus.startedOn[r.id] == "doomed", "nothing is re-placed within the grace")
        // Past the grace (three intervals more): lost.
        await s.checkLiveness(now: start + .milliseconds(700))
        let lost = try await s.proplet("doomed")
        #expect(lost.alive == false && lost.state == "lost")
        let failed = try await s.task(plain.id)
        #expect(failed.state == .failed)
        #expect(failed.reason?.contains("proplet lost") == true)
        // The re-queued attempt goes to the proplet that is there (heard again: the ticks above
        // ran ahead of its heartbeats too).
        await s.handleAnnouncement(announcement("fresh", memory: 4 * Self.gib))
        let requeued = try await s.task(r.id)
        #expect(requeued.attempt == 2)
        #expect(bus.startedOn[r.id] == "fresh")
        #expect(try await s.task(r.id).state == .scheduled)
    }

    /// Each time the manager gives a proplet up, its placement epoch goes up (and stays up across
    /// a manager restart); every start carries the epoch it was placed in, and a heartbeat that
    /// asks for the epoch is answered after the heartbeat is applied.
    @Test func givingAPropletUpRaisesItsEpochWhichStartsCarryAndHeartbeatsAreToldAfterwards() async throws {
        let s = try service(interval: .milliseconds(100))
        await s.handleAnnouncement(announcement("p", memory: 4 * Self.gib))
        let first = try await s.create(spec("first", memory: Self.gib), start: true)
        #expect(bus.starts.withLock { $0.last?.0.epoch } == 0)
        await s.markDead("p", reason: "an operator's decision")
        #expect(try await s.task(first.id).state == .failed)
        #expect(try await s.proplet("p").epoch == 1)
        // Back (its heartbeat asks for the epoch): told 1, and new starts carry 1.
        await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .online, seq: 9, announcement: announcement("p", memory: 4 * Self.gib), awaitingEpoch: true))
        #expect(bus.epochs.withLock { $0 } == [PropletEpoch(propletId: "p", epoch: 1)])
        let second = try await s.create(spec("second", memory: Self.gib), start: true)
        #expect(bus.starts.withLock { $0.last.map { ($0.0.taskId, $0.0.epoch) } } ?? ("", nil) == (second.id, 1))
        // A heartbeat that does not ask is not answered.
        await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .online, seq: 10, running: [second.currentAttempt]))
        #expect(bus.epochs.withLock { $0.count } == 1)
        // The epoch is in the store: a restarted manager places with it.
        let restarted = try service(interval: .milliseconds(100))
        try await restarted.recover()
        #expect(try await restarted.proplet("p").epoch == 1)
    }

    /// A Last Will (a dropped connection) disconnects; a proplet back within the grace gets its
    /// tasks back as they were, and their results count. A goodbye (a graceful shutdown, with a
    /// sequence number) is lost at once.
    @Test func theLastWillDisconnectsAndAReturnWithinTheGraceKeepsTheTasks() async throws {
        let s = try service(interval: .milliseconds(100))
        await s.handleAnnouncement(announcement("p", memory: 4 * Self.gib))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .running, at: WallClock.now()))
        await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .offline))
        let disconnected = try await s.proplet("p")
        #expect(disconnected.alive == false && disconnected.state == "disconnected")
        #expect(try await s.task(t.id).state == .unknown)
        await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .online, seq: 5, running: [TaskAttempt(taskId: t.id, attempt: 1)]))
        #expect(try await s.proplet("p").alive)
        #expect(try await s.task(t.id).state == .running)
        await complete(s, t.id, on: "p", state: .completed, exit: 0)
        #expect(try await s.task(t.id).state == .completed)
        await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .offline, seq: 6))
        #expect(try await s.proplet("p").state == "lost")
    }

    /// A result whose store write fails (the manager's disk is full) is not acknowledged: the
    /// proplet keeps it in its outbox and sends it again, and once there is room it is stored and
    /// acknowledged. Before, it was acknowledged anyway and lost.
    @Test(.enabled(if: isRoot, "requires root: mounts a small tmpfs to fill"))
    func aResultIsAcknowledgedOnlyOnceStored() async throws {
        try await withSmallStore { dir, s, t in
            await s.handleEvent(TaskEvent(taskId: t.id, attempt: 1, propletId: "p", phase: .running, at: WallClock.now()))
            _ = try runProcess("/bin/dd", ["if=/dev/zero", "of=\(dir.path)/filler", "bs=4k"], timeout: 30)
            await complete(s, t.id, on: "p")
            #expect(bus.acks.withLock { $0 }.isEmpty, "acknowledged a result the store does not have")
            #expect(try SQLiteStore(path: dir.path + "/manager.db").task(id: t.id)?.state == .running, "the full disk took nothing")
            await complete(s, t.id, on: "p")  // sent again: still no room
            #expect(bus.acks.withLock { $0 }.isEmpty)
            unlink(dir.path + "/filler")
            await complete(s, t.id, on: "p")
            #expect(bus.acks.withLock { $0 } == [TaskAttempt(taskId: t.id, attempt: 1)])
            #expect(try await s.task(t.id).state == .completed)
            #expect(try SQLiteStore(path: dir.path + "/manager.db").task(id: t.id)?.result?.exitCode == 0)
        }
    }

    /// A task service whose store is on a 2 MiB tmpfs (to fill), proplet `p`, and a task placed there.
    func withSmallStore(_ body: (TempDirectory, TaskService, TaskRecord) async throws -> Void) async throws {
        let dir = try TempDirectory("propeller-full-store")
        defer { dir.remove() }
        try #require(runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "propeller-full-store", dir.path], timeout: 10).status == 0)
        defer { _ = try? runProcess("/bin/umount", [dir.path], timeout: 30) }
        let s = TaskService(store: try SQLiteStore(path: dir.path + "/manager.db"), bus: bus)
        await s.handleAnnouncement(announcement("p", memory: 4 * Self.gib))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        try await body(dir, s, t)
    }

    /// A decision made while the store's disk is full (a lost proplet's task failed) is kept and
    /// shown, and written once there is room: before, the store kept the stale `running` row and
    /// the task was stuck there for good.
    @Test(.enabled(if: isRoot, "requires root: mounts a small tmpfs to fill"))
    func decisionsTheStoreRefusedAreWrittenOnceThereIsRoom() async throws {
        try await withSmallStore { dir, s, t in
            _ = try runProcess("/bin/dd", ["if=/dev/zero", "of=\(dir.path)/filler", "bs=4k"], timeout: 30)
            await s.markDead("p", reason: "gone")
            #expect(try await s.task(t.id).state == .failed, "the decision is shown while unsaved")
            #expect(try await s.history(t.id).last?.state == .failed)
            #expect(try SQLiteStore(path: dir.path + "/manager.db").task(id: t.id)?.state == .scheduled, "the full disk took nothing")
            unlink(dir.path + "/filler")
            await s.checkLiveness()
            #expect(try SQLiteStore(path: dir.path + "/manager.db").task(id: t.id)?.state == .failed)
            #expect(try SQLiteStore(path: dir.path + "/manager.db").history(taskID: t.id).last?.state == .failed)
        }
    }

    @Test func stopAndDeleteFollowTheLifecycle() async throws {
        let s = try service()
        let created = try await s.create(spec("later", memory: Self.gib), start: false)
        #expect(created.state == .created)
        let queued = try await s.start(created.id)
        #expect(queued.state == .pending)  // no proplet yet
        await #expect(throws: APIError.self) { try await s.delete(created.id) }
        #expect(try await s.stop(created.id).state == .stopped)
        await #expect(throws: APIError.self) { try await s.stop(created.id) }
        try await s.delete(created.id)
        await #expect(throws: APIError.self) { try await s.task(created.id) }

        await s.handleAnnouncement(announcement("p", memory: 4 * Self.gib))
        let running = try await s.create(spec("runs", memory: Self.gib), start: true)
        let stopping = try await s.stop(running.id)
        #expect(stopping.stopRequested && stopping.state == .scheduled)
        #expect(bus.stops.withLock { $0.map(\.0.taskId) } == [running.id])
        await complete(s, running.id, on: "p", state: .stopped, exit: 137)
        #expect(try await s.task(running.id).state == .stopped)
    }

    @Test func heartbeatsResendLostStartsAndStopOrphans() async throws {
        let s = try service(interval: .milliseconds(10))
        await s.handleAnnouncement(announcement("p", memory: 4 * Self.gib))
        let t = try await s.create(spec("t", memory: Self.gib), start: true)
        try await Task.sleep(for: .milliseconds(30))
        let a = announcement("p", memory: 4 * Self.gib)
        await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .online, seq: 1, announcement: a, running: [TaskAttempt(taskId: "ghost", attempt: 1)]))
        #expect(bus.starts.withLock { $0.filter { $0.0.taskId == t.id }.count } == 2)
        #expect(bus.stops.withLock { $0.map(\.0.taskId) } == ["ghost"])
        // Reported as running from now on: nothing more is resent.
        for i in 2...5 {
            await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .online, seq: UInt64(i), announcement: a, running: [TaskAttempt(taskId: t.id, attempt: 1)]))
        }
        #expect(bus.starts.withLock { $0.filter { $0.0.taskId == t.id }.count } == 2)
        #expect(try await s.task(t.id).state == .scheduled)
    }

    /// A stop whose message was lost is sent again while the proplet still reports the attempt
    /// running; a stopped task whose start was lost is never started again, and ends stopped.
    @Test func stopsAreResentUntilTheContainerIsGoneAndStartsNeverFollowAStop() async throws {
        let s = try service(interval: .milliseconds(10))
        await s.handleAnnouncement(announcement("p", memory: 4 * Self.gib))
        let a = announcement("p", memory: 4 * Self.gib)
        let running = try await s.create(spec("running", memory: Self.gib), start: true)
        let neverStarted = try await s.create(spec("lost start", memory: Self.gib), start: true)
        let graceful = try await s.create(spec("graceful", memory: Self.gib), start: true)
        _ = try await s.stop(running.id, signal: 9, grace: 0)
        _ = try await s.stop(neverStarted.id, grace: 0)
        _ = try await s.stop(graceful.id, grace: 3600)
        #expect(bus.stops.withLock { $0.count } == 3)
        for i in 1...6 {
            try await Task.sleep(for: .milliseconds(25))
            await s.handleHeartbeat(PropletHeartbeat(propletId: "p", status: .online, seq: UInt64(i), announcement: a,
                                                     running: [TaskAttempt(taskId: running.id, attempt: 1), TaskAttempt(taskId: graceful.id, attempt: 1)]))
        }
        #expect(bus.stops.withLock { $0.filter { $0.0.taskId == running.id }.count } > 2, "the stop was sent again")
        #expect(bus.stops.withLock { $0.filter { $0.0.taskId == graceful.id }.count } == 1, "a stop is not sent again (as SIGKILL) within its grace")
        #expect(bus.starts.withLock { $0.filter { $0.0.taskId == neverStarted.id }.count } == 1, "no start after the stop")
        #expect(try await s.task(neverStarted.id).state == .stopped)
        #expect(try await s.task(running.id).state == .scheduled)
    }

    @Test func aRestartedManagerLosesNothing() async throws {
        let t1: TaskRecord
        let t2: TaskRecord
        let t3: TaskRecord
        do {
            let s = try service()
            await s.handleAnnouncement(announcement("p", memory: 2 * Self.gib))
            t1 = try await s.create(spec("placed", memory: Self.gib), start: true)
            t2 = try await s.create(spec("pending", memory: 2 * Self.gib), start: true)
            t3 = try await s.create(spec("done", memory: Self.gib), start: true)
            await complete(s, t3.id, on: "p")
        }
        let s = try service()
        try await s.recover()
        #expect(try await s.task(t1.id).state == .scheduled)
        #expect(try await s.task(t2.id).state == .pending)
        #expect(try await s.task(t3.id).result?.stdoutTail == "out")
        #expect(await s.queueLength == 1)
        #expect(try await s.proplet("p").allocated?.memoryBytes == Self.gib)
        // The reservation was rebuilt: finishing t1 frees room for t2.
        await complete(s, t1.id, on: "p")
        #expect(try await s.task(t2.id).state == .scheduled)
    }
}
