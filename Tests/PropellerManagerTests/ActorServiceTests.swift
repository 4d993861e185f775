import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

/// The actor service's decisions on a real SQLite store, with proplets played by the test
/// (their reports are fed in; `RecordingBus` keeps what the service sends them).
@Suite("Actor service")
final class ActorServiceTests: Sendable {
    static let mib: UInt64 = 1 << 20
    let dir: TempDirectory
    let bus = RecordingBus()

    init() throws { dir = try TempDirectory("propeller-actors") }
    deinit { dir.remove() }  // each test has its own instance and directory

    func services(ttl: Duration = .seconds(300), interval: Duration = .seconds(5)) async throws -> (TaskService, ActorService) {
        let store = try SQLiteStore(path: dir.path + "/manager.db")
        var config = ManagerConfiguration()
        config.actors.workerIdleTTL = ttl
        config.livenessInterval = interval
        let tasks = TaskService(store: store, bus: bus, configuration: config)
        return (tasks, ActorService(tasks: tasks))
    }

    func prepared() -> [(WorkerCommand, String)] { bus.workerCommands.withLock { $0.filter { $0.0.action == .prepare } } }
    func retired() -> [String] { bus.workerCommands.withLock { $0.filter { $0.0.action == .retire }.map(\.0.workerId) } }
    func runs() -> [(ExecutionCommand, String)] { bus.executionCommands.withLock { $0.filter { $0.0.action == .run } } }

    func ready(_ actors: ActorService, _ command: WorkerCommand, on proplet: String) async {
        await actors.handleWorkerReport(WorkerReport(propletId: proplet, workerId: command.workerId, status: .ready))
    }

    func finish(_ actors: ActorService, _ run: (ExecutionCommand, String), results: String = "ok") async {
        let outcome = TaskResult(taskId: run.0.executionId, attempt: run.0.attempt, propletId: run.1, state: .completed, exitCode: 0,
                                 startedAt: 1, finishedAt: 2, stdoutTail: "out")
        await actors.handleExecutionReport(ExecutionReport(propletId: run.1, workerId: run.0.workerId, executionId: run.0.executionId,
                                                           attempt: run.0.attempt, outcome: outcome, results: Data(results.utf8)))
    }

    @Test func workersReserveRoomInTheTaskLedgerAndWaitWhenThereIsNone() async throws {
        let (tasks, actors) = try await services()
        await tasks.handleAnnouncement(announcement("p1", memory: 1024 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a", resources: Resources(memoryBytes: 600 * Self.mib), minWorkers: 2, maxWorkers: 2))
        #expect(prepared().count == 1, "only one 600 MiB worker fits on a 1 GiB proplet")
        let waiting = try await actors.workerList(a.id).filter { $0.propletId == nil }
        #expect(waiting.count == 1 && waiting[0].reason != nil)
        // A task cannot take the room a worker holds.
        let t = try await tasks.create(TaskSpec(name: "t", image: "r/t", resources: Resources(memoryBytes: 600 * Self.mib)), start: true)
        #expect(try await tasks.task(t.id).state == .pending)
        // A second proplet: the task that waited takes it; a third: the waiting worker is placed
        // on the autoscaler's next pass.
        await tasks.handleAnnouncement(announcement("p2", memory: 1024 * Self.mib))
        #expect(try await tasks.task(t.id).assignedProplet == "p2")
        await actors.tick()
        #expect(prepared().count == 1)
        await tasks.handleAnnouncement(announcement("p3", memory: 1024 * Self.mib))
        await actors.tick()
        #expect(prepared().map(\.1).sorted() == ["p1", "p3"])
    }

    @Test func idleWorkersPastTheTTLAreRetiredDownToMinWorkers() async throws {
        let (tasks, actors) = try await services(ttl: .zero)
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a", minWorkers: 1, maxWorkers: 3))
        for _ in 0..<3 { _ = try await actors.send(a.id, body: Data("m".utf8), contentType: "text/plain", env: [:]) }
        #expect(prepared().count == 3, "the autoscaler adds workers while messages wait")
        for (w, p) in prepared() { await ready(actors, w, on: p) }
        #expect(runs().count == 3)
        for r in runs() { await finish(actors, r) }
        try await Task.sleep(for: .milliseconds(1100))
        await actors.tick()
        #expect(retired().count == 2, "idle workers retire, one stays (min_workers 1)")
        for id in retired() { await actors.handleWorkerReport(WorkerReport(propletId: "p1", workerId: id, status: .stopped)) }
        #expect(try await actors.workerList(a.id).count == 1)
        #expect(try await tasks.proplet("p1").allocated?.memoryBytes == 256 * Self.mib, "the retired workers gave their room back")
    }

    @Test func aMessageRunsAgainOnceWhenItsWorkerIsLostThenFails() async throws {
        let (tasks, actors) = try await services()
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        await tasks.handleAnnouncement(announcement("p2", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a"))
        await ready(actors, prepared()[0].0, on: prepared()[0].1)
        let e = try await actors.send(a.id, body: Data("m".utf8), contentType: "text/plain", env: ["K": "v"])
        #expect(runs().count == 1 && runs()[0].0.env == ["K": "v"])
        // Its proplet is lost: a new worker, the same message, attempt 2.
        await tasks.markDead(runs()[0].1, reason: "gone")
        await actors.tick()
        #expect(try await actors.execution(a.id, e.id).status == .submitted)
        let second = try #require(prepared().last)
        await ready(actors, second.0, on: second.1)
        #expect(runs().count == 2 && runs()[1].0.attempt == 2 && runs()[1].0.executionId == e.id)
        // Lost again: the execution fails with the reason.
        await tasks.markDead(runs()[1].1, reason: "gone")
        await actors.tick()
        let failed = try await actors.execution(a.id, e.id)
        #expect(failed.status == .error && failed.error?.contains("after a re-run") == true, "\(failed.error ?? "")")
        #expect(try await actors.inboxLength(a.id) == 0)
    }

    @Test func aRestartedServiceResumesTheInboxInOrder() async throws {
        var ids: [String] = []
        do {
            let (tasks, actors) = try await services()
            _ = tasks
            let a = try await actors.create(ActorSpec(name: "a", image: "r/a"))
            for i in 0..<4 { ids.append(try await actors.send(a.id, body: Data("m\(i)".utf8), contentType: "text/plain", env: [:]).id) }
        }
        let (tasks, actors) = try await services()
        try await tasks.recover()
        let actor = try #require(await actors.list().first)
        #expect(try await actors.inboxLength(actor.id) == 4)
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        await actors.tick()
        let (w, p) = try #require(prepared().last)
        await ready(actors, w, on: p)
        var order: [String] = []
        while let r = runs().last, !order.contains(r.0.executionId) {
            order.append(r.0.executionId)
            #expect(String(decoding: r.0.message, as: UTF8.self) == "m\(order.count - 1)")
            await finish(actors, r)
        }
        #expect(order == ids, "FIFO after a restart")
    }

    @Test func aNewImageReplacesTheWorkersAndKeepsTheQueue() async throws {
        let (tasks, actors) = try await services()
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a:1"))
        let old = prepared()[0]
        await ready(actors, old.0, on: old.1)
        let busy = try await actors.send(a.id, body: Data("first".utf8), contentType: "text/plain", env: [:])
        let queued = try await actors.send(a.id, body: Data("second".utf8), contentType: "text/plain", env: [:])
        let updated = try await actors.update(a.id) { $0.image = "r/a:2" }
        #expect(updated.revision == 2 && updated.status == .submitted)
        #expect(retired() == [old.0.workerId], "the old worker is told to retire (a busy one finishes its execution first)")
        let new = try #require(prepared().last)
        #expect(new.0.image == "r/a:2" && new.0.revision == 2)
        await finish(actors, runs()[0])
        #expect(try await actors.execution(a.id, busy.id).status == .complete)
        #expect(try await actors.workerList(a.id).first { $0.id == old.0.workerId }?.status == .shuttingDown)
        #expect(runs().count == 1, "the queued message waits for a worker of the new revision")
        await ready(actors, new.0, on: new.1)
        #expect(runs().count == 2 && runs()[1].0.workerId == new.0.workerId && runs()[1].0.executionId == queued.id)
        #expect(try await actors.actor(a.id).status == .ready)
    }

    @Test func killPurgeAndWorkerRequests() async throws {
        let (tasks, actors) = try await services()
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a", maxWorkers: 2))
        await ready(actors, prepared()[0].0, on: prepared()[0].1)
        let running = try await actors.send(a.id, body: Data("1".utf8), contentType: "text/plain", env: [:])
        let waiting = try await actors.send(a.id, body: Data("2".utf8), contentType: "text/plain", env: [:])
        _ = try await actors.send(a.id, body: Data("3".utf8), contentType: "text/plain", env: [:])
        // A queued execution is dropped at once; a running one is killed through its proplet.
        #expect(try await actors.kill(a.id, waiting.id).error == "cancelled before it ran")
        _ = try await actors.kill(a.id, running.id)
        #expect(bus.executionCommands.withLock { $0.contains { $0.0.action == .kill && $0.0.executionId == running.id } })
        await finish(actors, runs()[0])
        let killed = try await actors.execution(a.id, running.id)
        #expect(killed.status == .error && killed.error == "killed on request")
        // Purge drops what waits.
        let purgedBefore = try await actors.inboxLength(a.id)
        #expect(try await actors.purge(a.id) == purgedBefore)
        #expect(try await actors.inboxLength(a.id) == 0)
        // Workers on request, within max_workers.
        await #expect(throws: APIError.self) { _ = try await actors.ensureWorkers(a.id, count: 3) }
        #expect(try await actors.ensureWorkers(a.id, count: 2).count == 2)
        await #expect(throws: APIError.self) { try await actors.retireWorker(a.id, workerID: "w-none") }
    }

    /// An execution that ends while the store's disk is full is shown as ended, kept, and
    /// written once there is room (by the autoscaler's next pass); a change to an actor waits
    /// until then, refused with the reason.
    @Test(.enabled(if: isRoot, "requires root: mounts a small tmpfs to fill"))
    func anExecutionThatEndsWhileTheStoreIsFullIsWrittenLater() async throws {
        let small = try TempDirectory("propeller-full-actors")
        defer { small.remove() }
        try #require(runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "propeller-full-actors", small.path], timeout: 10).status == 0)
        defer { _ = try? runProcess("/bin/umount", [small.path], timeout: 30) }
        let tasks = TaskService(store: try SQLiteStore(path: small.path + "/manager.db"), bus: bus)
        let actors = ActorService(tasks: tasks)
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a"))
        await ready(actors, prepared()[0].0, on: "p1")
        let e = try await actors.send(a.id, body: Data("m".utf8), contentType: "text/plain", env: [:])
        _ = try runProcess("/bin/dd", ["if=/dev/zero", "of=\(small.path)/filler", "bs=4k"], timeout: 30)
        await finish(actors, runs()[0])
        #expect(try await actors.execution(a.id, e.id).status == .complete, "the outcome is shown while unsaved")
        #expect(try SQLiteStore(path: small.path + "/manager.db").execution(id: e.id)?.status == .submitted, "the full disk took nothing")
        await #expect(throws: PropellerError.self) { _ = try await actors.update(a.id) { $0.description = "later" } }
        unlink(small.path + "/filler")
        await actors.tick()
        #expect(try SQLiteStore(path: small.path + "/manager.db").execution(id: e.id)?.status == .complete)
        #expect(try await actors.executionResults(a.id, e.id) == Data("ok".utf8))
        #expect(try await actors.update(a.id) { $0.description = "later" }.spec.description == "later")
    }

    @Test func aWorkerItsPropletStopsListingIsReplaced() async throws {
        let (tasks, actors) = try await services(interval: .milliseconds(10))
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a"))
        let first = prepared()[0]
        await ready(actors, first.0, on: "p1")
        let listed = PropletHeartbeat(propletId: "p1", status: .online, seq: 1, workers: [WorkerBeat(workerId: first.0.workerId)])
        let forgotten = PropletHeartbeat(propletId: "p1", status: .online, seq: 2, workers: [])
        try await Task.sleep(for: .milliseconds(30))
        await actors.handleHeartbeat(listed)
        await actors.handleHeartbeat(forgotten)
        #expect(prepared().count == 1, "one missed listing is not enough")
        await actors.handleHeartbeat(forgotten)
        #expect(prepared().count == 2, "a replacement is prepared")
        #expect(try await actors.workerList(a.id).map(\.id) == [prepared()[1].0.workerId])
        // One still pulling when its proplet restarted (the prepare is gone with it): replaced too.
        try await Task.sleep(for: .milliseconds(30))
        await actors.handleHeartbeat(forgotten)
        await actors.handleHeartbeat(forgotten)
        #expect(prepared().count == 3)
    }

    @Test func aSynchronousWaitEndsWithTheExecutionOrItsTimeout() async throws {
        let (tasks, actors) = try await services()
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a"))
        let e = try await actors.send(a.id, body: Data("m".utf8), contentType: "text/plain", env: [:])
        #expect(await actors.wait(for: e.id, timeout: .milliseconds(50)) == nil, "no worker yet: the wait times out")
        await ready(actors, prepared()[0].0, on: prepared()[0].1)
        async let waited = actors.wait(for: e.id, timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(20))
        await finish(actors, runs()[0])
        let done = await waited
        #expect(done?.status == .complete)
        #expect(await tasks.executionWaiterTimers.isEmpty, "the timer of a wait that ended is cancelled")
    }

    @Test func aPropletWithoutTheWorkerGetsTheMessageRunElsewhere() async throws {
        let (tasks, actors) = try await services()
        await tasks.handleAnnouncement(announcement("p1", memory: 4096 * Self.mib))
        let a = try await actors.create(ActorSpec(name: "a", image: "r/a"))
        await ready(actors, prepared()[0].0, on: "p1")
        let e = try await actors.send(a.id, body: Data("m".utf8), contentType: "text/plain", env: [:])
        let run = runs()[0]
        let outcome = TaskResult(taskId: e.id, attempt: 1, propletId: "p1", state: .failed, error: "worker is not ready")
        await actors.handleExecutionReport(ExecutionReport(propletId: "p1", workerId: run.0.workerId, executionId: e.id, attempt: 1,
                                                           outcome: outcome, workerMissing: true))
        #expect(try await actors.execution(a.id, e.id).attempt == 2)
        #expect(prepared().count == 2, "the missing worker is replaced")
        #expect(try await actors.workerList(a.id).allSatisfy { $0.id != run.0.workerId })
    }
}
