import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

/// The cluster's transition function, driven directly: tables of events with the effects each
/// must have, and long random event sequences compared with a small reference model.
@Suite struct ClusterStateTests {
    static let gib: UInt64 = 1 << 30
    static let t0 = ContinuousClock.now

    static func at(_ seconds: Double) -> Moment {
        Moment(wall: 1_800_000_000 + seconds, mono: t0 + .milliseconds(Int64(seconds * 1000)))
    }

    static var configuration: ManagerConfiguration {
        var c = ManagerConfiguration()
        c.livenessInterval = .seconds(1)  // silent after 3 s, lost 3 s later
        return c
    }

    static func announcement(_ id: String, memory: UInt64 = 4 * gib, tasks: UInt64 = 4) -> PropletAnnouncement {
        PropletAnnouncement(propletId: id, name: id, version: "test", labels: [:], capacity: Capacity(cpuMillis: 4000, memoryBytes: memory, pids: 65536, tasks: tasks),
                            os: "linux", arch: "amd64", cgroupMode: "v2")
    }

    static func spec(_ name: String, memory: UInt64 = gib, retries: Int = 1) -> TaskSpec {
        TaskSpec(name: name, image: "127.0.0.1:5000/app:v1", resources: Resources(memoryBytes: memory),
                 restartPolicy: retries > 1 ? RestartPolicy(mode: .onFailure, maxAttempts: retries) : .never)
    }

    /// A new task as the driver stores it before the event (at time 0 of the table: the time only
    /// goes into the record).
    static func created(_ spec: TaskSpec, id: String, start: Bool) -> ClusterEvent {
        .created(ClusterState.newTask(spec, id: id, start: start, at: 1_800_000_000, configuration: configuration).0)
    }

    static func result(_ id: String, _ attempt: Int, on proplet: String, _ state: TaskState, exit: Int32? = nil) -> TaskResult {
        TaskResult(taskId: id, attempt: attempt, propletId: proplet, state: state, exitCode: exit ?? (state == .completed ? 0 : 1), finishedAt: 1_800_000_000)
    }

    static func beat(_ id: String, tasks: UInt64 = 4, running: [(String, Int)] = [], finished: [(String, Int)] = [], awaitingEpoch: Bool = false) -> PropletHeartbeat {
        PropletHeartbeat(propletId: id, status: .online, seq: 1, announcement: announcement(id, tasks: tasks), running: running.map { TaskAttempt(taskId: $0.0, attempt: $0.1) },
                         finished: finished.map { TaskAttempt(taskId: $0.0, attempt: $0.1) }, awaitingEpoch: awaitingEpoch ? true : nil)
    }

    static func newState() -> ClusterState {
        var state = ClusterState(configuration: configuration)
        state.actors.workerIDs = .numbered(next: 1)
        return state
    }

    /// A new actor as the driver stores it before the event.
    static func actor(_ id: String, memory: UInt64 = gib, minWorkers: Int = 1, maxWorkers: Int = 1, stateless: Bool = true) -> ClusterEvent {
        .actorCreated(ClusterState.newActor(ActorSpec(name: id, image: "127.0.0.1:5000/actor:v1", resources: Resources(memoryBytes: memory),
                                                      minWorkers: minWorkers, maxWorkers: maxWorkers, stateless: stateless),
                                            id: id, at: 1_800_000_000, configuration: configuration))
    }

    /// The state, and the store as its effects left it: what the driver would read back for the
    /// events that carry stored records.
    struct Harness {
        var state = ClusterStateTests.newState()
        var stored: [String: TaskRecord] = [:]
        var proplets: [String: PropletRecord] = [:]

        /// Applies `event` at `seconds`, filling in the stored records it needs; returns the
        /// effects (or the error of a refused command).
        mutating func apply(_ event: ClusterEvent, at seconds: Double) throws -> [ClusterEffect] {
            let filled: ClusterEvent = switch event {
            case .heartbeat(let hb, _):
                .heartbeat(hb, stored: Dictionary((hb.running ?? []).compactMap { ref in state.active[ref.taskId] == nil ? stored[ref.taskId].map { ($0.id, $0) } : nil },
                                                  uniquingKeysWith: { a, _ in a }))
            case .result(let r, _): .result(r, stored: state.active[r.taskId]?.attempt == r.attempt ? nil : stored[r.taskId])
            case .start(let id, _): .start(id, stored: state.active[id] == nil ? stored[id] : nil)
            case .stop(let id, let signal, let grace, _): .stop(id, signal: signal, grace: grace, stored: state.active[id] == nil ? stored[id] : nil)
            default: event
            }
            if case .created(let t) = filled { stored[t.id] = t }  // the driver inserts it first
            let effects = try state.apply(filled, at: ClusterStateTests.at(seconds))
            for effect in effects {
                switch effect {
                case .save(let tasks, _): for t in tasks { stored[t.id] = t }
                case .saveProplet(let p): proplets[p.id] = p
                default: break
                }
            }
            return effects
        }

        /// `apply`, with the effects in short form (``describe(_:)``).
        mutating func step(_ event: ClusterEvent, at seconds: Double) throws -> [String] {
            try apply(event, at: seconds).compactMap(ClusterStateTests.describe)
        }

        func task(_ id: String) -> TaskRecord? { state.active[id] ?? stored[id] }
    }

    /// Effects in a form a table can hold: the store writes, messages and replies (not the log
    /// lines and watcher notifications).
    static func describe(_ e: ClusterEffect) -> String? {
        switch e {
        case .save(let ts, _): "save " + ts.map { "\($0.id):\($0.state.rawValue)/\($0.attempt)" }.joined(separator: ",")
        case .saveProplet(let p):
            "proplet \(p.id):\(p.state ?? "-")" + (p.draining == true ? " draining" : "") + (p.drain != nil ? " drain" : "") + (p.eligible == false ? " ineligible" : "")
        case .start(let s, let p): "start \(s.taskId)/\(s.attempt)@\(p)#\(s.epoch ?? 0)"
        case .stop(let s, let p): "stop \(s.taskId)/\(s.attempt)@\(p) signal \(s.signal)"
        case .acknowledge(let r, let p): "ack \(r.taskId)/\(r.attempt)@\(p)"
        case .confirm(let e): "epoch \(e.propletId)#\(e.epoch)"
        case .reply(.task(let t)): "reply \(t.id):\(t.state.rawValue)"
        case .reply(.actor(let a)): "reply actor \(a.id):\(a.status.rawValue)"
        case .reply(.execution(let e)): "reply execution \(e.id):\(e.status.rawValue)"
        case .reply(.workers(let ws)): "reply workers " + ws.map(\.id).joined(separator: ",")
        case .reply(.count(let n)): "reply \(n)"
        case .reply(.proplet(let p)): "reply proplet \(p.id)"
        case .write(.saveActor(let a)): "actor \(a.id):\(a.status.rawValue)"
        case .write(.setActorState(let id, let state)): "state \(id)=\(state)"
        case .write(.saveWorker(let w)): "worker \(w.id):\(w.status.rawValue)@\(w.propletId ?? "-")"
        case .write(.deleteWorker(let id)): "delete worker \(id)"
        case .write(.saveExecution(let e)): "execution \(e.id):\(e.status.rawValue)/\(e.attempt)"
        case .write(.finishExecution(let e, _, _)): "finish \(e.id):\(e.status.rawValue)/\(e.attempt)"
        case .worker(let c, let p): "\(c.action.rawValue) \(c.workerId)@\(p)"
        case .execution(let c, let p): "\(c.action.rawValue) \(c.executionId)/\(c.attempt) on \(c.workerId)@\(p)"
        case .ended(let e): "ended \(e.id):\(e.status.rawValue)"
        case .notify, .log: nil
        }
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var at: Double
        var event: ClusterEvent
        var effects: [String]
        var testDescription: String { "\(at) s: \(event)" }
    }

    /// Runs a table: each event's effects must be exactly the row's.
    static func run(_ rows: [Row], _ harness: inout Harness) throws {
        for row in rows {
            let got = try harness.step(row.event, at: row.at)
            #expect(got == row.effects, "at \(row.at) s, \(row.event)")
        }
    }

    // MARK: Tables

    /// Placement, phases and results: a result is acknowledged in the event that stores it, a
    /// failed attempt with a restart policy is placed again, duplicates are only acknowledged.
    @Test func resultsAndRestarts() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0.1, event: Self.created(Self.spec("t1", retries: 2), id: "t1", start: true),
                effects: ["save t1:scheduled/1", "start t1/1@p1#0", "reply t1:scheduled"]),
            Row(at: 0.2, event: .phase(TaskEvent(taskId: "t1", attempt: 1, propletId: "p1", phase: .running, at: 1)), effects: ["save t1:running/1"]),
            Row(at: 0.3, event: .result(Self.result("t1", 1, on: "p1", .failed), stored: nil),
                effects: ["save t1:pending/2", "ack t1/1@p1", "save t1:scheduled/2", "start t1/2@p1#0"]),
            // A report from another proplet, or of the old attempt, changes nothing.
            Row(at: 0.4, event: .phase(TaskEvent(taskId: "t1", attempt: 1, propletId: "p1", phase: .running, at: 1)), effects: []),
            Row(at: 0.5, event: .result(Self.result("t1", 2, on: "p2", .completed), stored: nil), effects: ["ack t1/2@p2"]),
            Row(at: 0.6, event: .result(Self.result("t1", 2, on: "p1", .completed), stored: nil), effects: ["save t1:completed/2", "ack t1/2@p1"]),
            Row(at: 0.7, event: .result(Self.result("t1", 2, on: "p1", .completed), stored: nil), effects: ["ack t1/2@p1"]),
            // A task too big for any proplet fails at once; one that must wait says why.
            Row(at: 0.8, event: Self.created(Self.spec("huge", memory: 64 * Self.gib), id: "huge", start: true), effects: ["save huge:failed/1", "reply huge:failed"]),
        ], &h)
        #expect(h.task("t1")?.result?.exitCode == 0)
        #expect(h.state.ledger.node("p1")?.allocated == .zero)
    }

    /// Task `a` placed and running on p1, whose connection then drops (its Last Will) at 1 s.
    static let aRunsOnP1ThenItsConnectionDrops = [
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.created(Self.spec("a"), id: "a", start: true), effects: ["save a:scheduled/1", "start a/1@p1#0", "reply a:scheduled"]),
            Row(at: 0.1, event: .phase(TaskEvent(taskId: "a", attempt: 1, propletId: "p1", phase: .running, at: 1)), effects: ["save a:running/1"]),
            Row(at: 1, event: .heartbeat(PropletHeartbeat(propletId: "p1", status: .offline), stored: [:]), effects: ["proplet p1:disconnected", "save a:unknown/1"]),
    ]

    /// Nomad's disconnect semantics: a Last Will makes the work unknown; back within the grace
    /// it is as it was; past it, the proplet is lost (a new epoch) and the work fails or moves;
    /// back after that, what it still runs is taken back when nothing replaced it, and its real
    /// result counts.
    @Test func disconnectsLossesAndReturns() throws {
        var h = Harness()
        try Self.run(Self.aRunsOnP1ThenItsConnectionDrops + [
            Row(at: 2, event: .tick(brokerLink: nil), effects: []),
            // Back within the grace: running again, nothing re-placed.
            Row(at: 2.5, event: .heartbeat(Self.beat("p1", running: [("a", 1)]), stored: [:]), effects: ["proplet p1:alive", "save a:running/1"]),
            // Silent for more than three intervals: disconnected; three more: lost.
            Row(at: 6, event: .tick(brokerLink: nil), effects: ["proplet p1:disconnected", "save a:unknown/1"]),
            Row(at: 9, event: .tick(brokerLink: nil), effects: ["proplet p1:lost", "save a:failed/1"]),
            // Back, still running it, and asking for the epoch: the attempt is taken back.
            Row(at: 10, event: .heartbeat(Self.beat("p1", running: [("a", 1)], awaitingEpoch: true), stored: [:]),
                effects: ["proplet p1:alive", "save a:running/1", "epoch p1#1"]),
            Row(at: 10.5, event: .result(Self.result("a", 1, on: "p1", .completed), stored: nil), effects: ["save a:completed/1", "ack a/1@p1"]),
            Row(at: 11, event: Self.created(Self.spec("b"), id: "b", start: true), effects: ["save b:scheduled/1", "start b/1@p1#1", "reply b:scheduled"]),
        ], &h)
        #expect(h.proplets["p1"]?.epoch == 1)
    }

    /// A start the proplet holds (waiting for the epoch) is neither lost nor running: it keeps a
    /// placed task from being given up, and it does not take a given-up task back (it is about to
    /// be dropped as withdrawn). Found by the end-to-end test of a SIGSTOPped proplet.
    @Test func heldStartsAreNeitherLostNorRunning() throws {
        var h = Harness()
        var holding = Self.beat("p1", awaitingEpoch: true)
        holding.held = [TaskAttempt(taskId: "a", attempt: 1)]
        try Self.run(Self.aRunsOnP1ThenItsConnectionDrops + [
            Row(at: 5, event: .tick(brokerLink: nil), effects: ["proplet p1:lost", "save a:failed/1"]),
            Row(at: 6, event: .heartbeat(holding, stored: [:]), effects: ["proplet p1:alive", "epoch p1#1"]),
            Row(at: 7, event: Self.created(Self.spec("b"), id: "b", start: true), effects: ["save b:scheduled/1", "start b/1@p1#1", "reply b:scheduled"]),
        ], &h)
        holding.held = [TaskAttempt(taskId: "b", attempt: 1)]
        for at in [8.0, 9, 10, 11, 12] { #expect(try h.step(.heartbeat(holding, stored: [:]), at: at) == ["epoch p1#1"]) }
        #expect(h.task("a")?.state == .failed)
        #expect(h.task("b")?.state == .scheduled)
    }

    /// A task stopped while its proplet is away ends `stopped` when the proplet is lost; if the
    /// container had really ended otherwise (the stop never reached it), its late result wins.
    /// Found by a 900 s chaos run.
    @Test func aLateResultOutranksAStopThatNeverArrived() throws {
        var h = Harness()
        try Self.run(Self.aRunsOnP1ThenItsConnectionDrops + [
            Row(at: 1.5, event: .stop("a", signal: 15, grace: 0, stored: nil), effects: ["save a:unknown/1", "stop a/1@p1 signal 15", "reply a:unknown"]),
            Row(at: 5, event: .tick(brokerLink: nil), effects: ["proplet p1:lost", "save a:stopped/1"]),
            Row(at: 6, event: .result(Self.result("a", 1, on: "p1", .failed, exit: 3), stored: nil), effects: ["save a:failed/1", "ack a/1@p1"]),
        ], &h)
        #expect(h.task("a")?.result?.exitCode == 3)
    }

    /// The manager cannot hear anyone while its own broker link is down: no proplet is
    /// disconnected for that, and every clock starts again when it is back.
    @Test func theManagersOwnBrokerOutageIsNotTheProplets() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0.5, event: .tick(brokerLink: BrokerLink(connected: true, connections: 1)), effects: []),
            Row(at: 1, event: .tick(brokerLink: BrokerLink(connected: false, connections: 1)), effects: []),
            Row(at: 30, event: .tick(brokerLink: BrokerLink(connected: false, connections: 1)), effects: []),
            Row(at: 31, event: .tick(brokerLink: BrokerLink(connected: true, connections: 2)), effects: []),
            Row(at: 33, event: .tick(brokerLink: BrokerLink(connected: true, connections: 2)), effects: []),
            Row(at: 34.5, event: .tick(brokerLink: BrokerLink(connected: true, connections: 2)), effects: ["proplet p1:disconnected"]),
        ], &h)
    }

    /// Stops: a pending task stops at once; a placed one is asked, and asked again (SIGKILL) only
    /// after its grace; a start is never sent after a stop; a task whose start was lost and that
    /// was stopped ends `stopped` once its proplet has not listed it for three heartbeats.
    @Test func stops() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1", tasks: 1)), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.created(Self.spec("run"), id: "run", start: true), effects: ["save run:scheduled/1", "start run/1@p1#0", "reply run:scheduled"]),
            Row(at: 0, event: Self.created(Self.spec("wait"), id: "wait", start: true), effects: ["save wait:pending/1", "reply wait:pending"]),
            Row(at: 0.1, event: .stop("wait", signal: 15, grace: 10, stored: nil), effects: ["save wait:stopped/1", "reply wait:stopped"]),
            Row(at: 0.2, event: .stop("run", signal: 15, grace: 5, stored: nil), effects: ["save run:scheduled/1", "stop run/1@p1 signal 15", "reply run:scheduled"]),
            Row(at: 1, event: .heartbeat(Self.beat("p1", tasks: 1, running: [("run", 1)]), stored: [:]), effects: []),
            Row(at: 7.3, event: .heartbeat(Self.beat("p1", tasks: 1, running: [("run", 1)]), stored: [:]), effects: ["stop run/1@p1 signal 9"]),
            // Gone from the heartbeats without a result (its start was lost): after three, stopped.
            Row(at: 10, event: .heartbeat(Self.beat("p1", tasks: 1), stored: [:]), effects: []),
            Row(at: 11, event: .heartbeat(Self.beat("p1", tasks: 1), stored: [:]), effects: []),
            Row(at: 12, event: .heartbeat(Self.beat("p1", tasks: 1), stored: [:]), effects: ["save run:stopped/1"]),
        ], &h)
        #expect(h.task("run")?.reason == "stopped before it started")
        #expect(throws: APIError.self) { _ = try h.apply(.stop("run", signal: 15, grace: 1, stored: nil), at: 13) }
        #expect(throws: APIError.self) { _ = try h.apply(.start("nothing", stored: nil), at: 13) }
    }

    /// A draining proplet (shutting down) gets nothing new; what waits goes elsewhere, or waits.
    @Test func drainingProplets() throws {
        var h = Harness()
        var draining = Self.beat("p1")
        draining.status = .draining
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0.5, event: .heartbeat(draining, stored: [:]), effects: ["proplet p1:alive draining"]),
            Row(at: 0.6, event: .heartbeat(draining, stored: [:]), effects: []),
            Row(at: 1, event: Self.created(Self.spec("t"), id: "t", start: true), effects: ["save t:pending/1", "reply t:pending"]),
            Row(at: 1.5, event: .announced(Self.announcement("p2")), effects: ["proplet p2:alive", "save t:scheduled/1", "start t/1@p2#0"]),
            Row(at: 2, event: .heartbeat(Self.beat("p1"), stored: [:]), effects: ["proplet p1:alive"]),
        ], &h)
        #expect(h.task("t")?.reason == nil)
    }

    /// An operator's drain: nothing new goes to the proplet, what runs there finishes there;
    /// at the deadline what still runs is stopped: another attempt elsewhere when its restart
    /// policy allows, else it ends stopped as its proplet reports; then the drain is complete and the proplet stays
    /// ineligible until an operator opens it again.
    @Test func drainsKeepNewWorkOffAndStopWhatRunsAtTheDeadline() throws {
        var h = Harness()
        var pinned = Self.spec("pinned")
        pinned.propletId = "p1"
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.created(Self.spec("retried", retries: 2), id: "retried", start: true),
                effects: ["save retried:scheduled/1", "start retried/1@p1#0", "reply retried:scheduled"]),
            Row(at: 0, event: Self.created(Self.spec("once"), id: "once", start: true), effects: ["save once:scheduled/1", "start once/1@p1#0", "reply once:scheduled"]),
            Row(at: 0, event: Self.created(Self.spec("done"), id: "done", start: true), effects: ["save done:scheduled/1", "start done/1@p1#0", "reply done:scheduled"]),
            Row(at: 1, event: .drain("p1", deadlineSeconds: 10), effects: ["proplet p1:alive drain ineligible", "reply proplet p1"]),
            Row(at: 1.5, event: Self.created(Self.spec("new"), id: "new", start: true), effects: ["save new:pending/1", "reply new:pending"]),
            Row(at: 2, event: .announced(Self.announcement("p2")), effects: ["proplet p2:alive", "save new:scheduled/1", "start new/1@p2#0"]),
            // What runs there finishes there, as usual.
            Row(at: 3, event: .result(Self.result("done", 1, on: "p1", .completed), stored: nil), effects: ["save done:completed/1", "ack done/1@p1"]),
            Row(at: 4, event: .heartbeat(Self.beat("p1", running: [("retried", 1), ("once", 1)]), stored: [:]), effects: []),
            Row(at: 4, event: .heartbeat(Self.beat("p2", running: [("new", 1)]), stored: [:]), effects: []),
            Row(at: 6, event: .heartbeat(Self.beat("p1", running: [("retried", 1), ("once", 1)]), stored: [:]), effects: []),
            Row(at: 6, event: .heartbeat(Self.beat("p2", running: [("new", 1)]), stored: [:]), effects: []),
            Row(at: 8, event: .tick(brokerLink: nil), effects: []),
            Row(at: 9, event: .heartbeat(Self.beat("p1", running: [("retried", 1), ("once", 1)]), stored: [:]), effects: []),
            Row(at: 9, event: .heartbeat(Self.beat("p2", running: [("new", 1)]), stored: [:]), effects: []),
            // The deadline: both are stopped; one runs again on p2, the other fails with the reason.
            Row(at: 11, event: .tick(brokerLink: nil),
                effects: ["stop once/1@p1 signal 15", "save once:scheduled/1", "stop retried/1@p1 signal 15", "save retried:pending/2",
                          "save retried:scheduled/2", "start retried/2@p2#0"]),
            // The last attempt ends stopped, with what its proplet reports; then the drain is complete.
            Row(at: 11.5, event: .result(Self.result("once", 1, on: "p1", .stopped, exit: 143), stored: nil), effects: ["save once:stopped/1", "ack once/1@p1"]),
            Row(at: 11.6, event: .tick(brokerLink: nil), effects: ["proplet p1:alive ineligible", "reply proplet p1"]),
            // Still closed after the drain: a task pinned there waits until it is opened.
            Row(at: 11.7, event: Self.created(pinned, id: "pinned", start: true), effects: ["save pinned:pending/1", "reply pinned:pending"]),
            Row(at: 12, event: .setEligibility("p1", eligible: true),
                effects: ["proplet p1:alive", "reply proplet p1", "save pinned:scheduled/1", "start pinned/1@p1#0"]),
        ], &h)
        #expect(h.task("once")?.state == .stopped && h.task("once")?.result?.exitCode == 143)
        #expect(h.task("retried")?.attempt == 2 && h.task("retried")?.assignedProplet == "p2")
        #expect(h.proplets["p1"]?.drain == nil && h.proplets["p1"]?.eligible == nil)
    }

    /// Eligibility by hand, a drain without a deadline that ends when its last task does, a
    /// cancelled drain, the refusals, and a closed proplet that stays closed across a restart.
    @Test func eligibilityAndDrainsWithoutDeadline() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0.5, event: .setEligibility("p1", eligible: false), effects: ["proplet p1:alive ineligible", "reply proplet p1"]),
            Row(at: 1, event: Self.created(Self.spec("t"), id: "t", start: true), effects: ["save t:pending/1", "reply t:pending"]),
            Row(at: 1.5, event: .setEligibility("p1", eligible: true), effects: ["proplet p1:alive", "reply proplet p1", "save t:scheduled/1", "start t/1@p1#0"]),
            Row(at: 2, event: .drain("p1", deadlineSeconds: nil), effects: ["proplet p1:alive drain ineligible", "reply proplet p1"]),
            Row(at: 30, event: .heartbeat(Self.beat("p1", running: [("t", 1)]), stored: [:]), effects: []),
            Row(at: 31, event: .result(Self.result("t", 1, on: "p1", .completed), stored: nil), effects: ["save t:completed/1", "ack t/1@p1"]),
            Row(at: 31.5, event: .tick(brokerLink: nil), effects: ["proplet p1:alive ineligible", "reply proplet p1"]),
            Row(at: 32, event: .drain("p1", deadlineSeconds: 60), effects: ["proplet p1:alive drain ineligible", "reply proplet p1", "proplet p1:alive ineligible", "reply proplet p1"]),
            Row(at: 33, event: .setEligibility("p1", eligible: true), effects: ["proplet p1:alive", "reply proplet p1"]),
        ], &h)
        #expect(throws: APIError.self) { _ = try h.apply(.cancelDrain("p1"), at: 34) }
        #expect(throws: APIError.self) { _ = try h.apply(.drain("nope", deadlineSeconds: nil), at: 34) }
        #expect(throws: APIError.self) { _ = try h.apply(.drain("p1", deadlineSeconds: -1), at: 34) }
        #expect(try h.step(.setEligibility("p1", eligible: false), at: 35) == ["proplet p1:alive ineligible", "reply proplet p1"])
        // A restarted manager reads the closed proplet back: still closed.
        var restarted = Harness()
        _ = try restarted.apply(.recovered(proplets: Array(h.proplets.values), tasks: []), at: 36)
        #expect(try restarted.step(Self.created(Self.spec("u"), id: "u", start: true), at: 37) == ["save u:pending/1", "reply u:pending"])
    }

    /// A drain moves actor workers at once: each is retired (a busy one after its execution)
    /// and its actor places a new one elsewhere.
    @Test func drainsMoveActorWorkers() throws {
        var h = Harness()
        _ = try h.apply(.announced(Self.announcement("p1")), at: 0)
        _ = try h.apply(Self.actor("a"), at: 0)
        #expect(h.state.actors.workers.values.map(\.propletId) == ["p1"])
        _ = try h.apply(.announced(Self.announcement("p2")), at: 1)
        let effects = try h.step(.drain("p1", deadlineSeconds: nil), at: 2)
        #expect(effects.contains("retire w-1@p1"), "\(effects)")
        #expect(effects.contains { $0.hasPrefix("prepare w-2@p2") }, "\(effects)")
    }

    /// Containers a proplet runs that the manager does not expect there are stopped; a lost
    /// start is sent again (with the proplet's epoch) until the proplet lists it.
    @Test func reconciliation() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.created(Self.spec("t"), id: "t", start: true), effects: ["save t:scheduled/1", "start t/1@p1#0", "reply t:scheduled"]),
            Row(at: 1, event: .heartbeat(Self.beat("p1", running: [("stray", 4)]), stored: [:]), effects: ["stop stray/4@p1 signal 9"]),
            Row(at: 2.5, event: .heartbeat(Self.beat("p1"), stored: [:]), effects: ["start t/1@p1#0"]),
            Row(at: 3, event: .heartbeat(Self.beat("p1", running: [("t", 1)]), stored: [:]), effects: []),
        ], &h)
    }

    /// A start that never arrives is sent again before the task is given up; heartbeats that
    /// arrive in a burst (queued in the manager's broker session while it was away, all from
    /// before the start reached the proplet) do not count as silence that lasts. Found by a 900 s
    /// chaos run: such a burst failed a task whose start was on its way, which then ran anyway.
    @Test func onlySilenceThatLastsGivesATaskUp() throws {
        var h = Harness()
        var rows = [
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.created(Self.spec("t"), id: "t", start: true), effects: ["save t:scheduled/1", "start t/1@p1#0", "reply t:scheduled"]),
        ]
        // Ten stale heartbeats within 50 ms, 3 s after the start went out: one resend, no failure.
        rows += (0..<10).map { i in
            Row(at: 3 + Double(i) * 0.005, event: .heartbeat(Self.beat("p1"), stored: [:]), effects: i == 0 ? ["start t/1@p1#0"] : [])
        }
        rows += [
            Row(at: 4, event: .heartbeat(Self.beat("p1"), stored: [:]), effects: []),
            Row(at: 5, event: .heartbeat(Self.beat("p1"), stored: [:]), effects: []),
            // Silent for two intervals, and resent two intervals ago: given up.
            Row(at: 5.1, event: .heartbeat(Self.beat("p1"), stored: [:]), effects: ["save t:failed/1"]),
        ]
        // Its start arrives after all (MQTT bounds no delivery time): the attempt is taken back
        // rather than killed as an orphan, and its real result counts.
        rows += [
            Row(at: 6, event: .heartbeat(Self.beat("p1", running: [("t", 1)]), stored: [:]), effects: ["save t:running/1"]),
            Row(at: 7, event: .result(Self.result("t", 1, on: "p1", .completed), stored: nil), effects: ["save t:completed/1", "ack t/1@p1"]),
        ]
        try Self.run(rows, &h)
        #expect(h.task("t")?.result?.exitCode == 0)
        #expect(h.state.ledger.node("p1")?.allocated == .zero)
    }

    static func message(_ id: String, to actor: String) -> ClusterEvent {
        .messageQueued(ExecutionRecord(id: id, actorId: actor, contentType: "text/plain", messageBytes: 1, env: [:], submittedAt: 1_800_000_000))
    }

    static func executed(_ id: String, _ attempt: Int, on worker: String, at proplet: String, _ state: TaskState = .completed) -> ClusterEvent {
        .executionReport(ExecutionReport(propletId: proplet, workerId: worker, executionId: id, attempt: attempt,
                                         outcome: result(id, attempt, on: proplet, state), results: Data("r".utf8)))
    }

    /// Messages run on warm workers, once each; a worker lost with its proplet is replaced
    /// elsewhere and its execution runs again there (at least once), a late report of the lost
    /// attempt changes nothing, a queued message can be killed.
    @Test func messagesRunOnWorkersThatAreReplacedWithTheirProplets() throws {
        var h = Harness()
        let beat2 = PropletHeartbeat(propletId: "p2", status: .online, seq: 1, workers: [])
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0, event: .announced(Self.announcement("p2")), effects: ["proplet p2:alive"]),
            Row(at: 0, event: Self.actor("a"), effects: ["worker w-1:requested@p1", "prepare w-1@p1", "reply actor a:submitted"]),
            Row(at: 0.1, event: .workerReport(WorkerReport(propletId: "p1", workerId: "w-1", status: .ready)), effects: ["worker w-1:ready@p1", "actor a:ready"]),
            Row(at: 0.2, event: Self.message("e1", to: "a"), effects: ["run e1/1 on w-1@p1", "reply execution e1:running"]),
            Row(at: 0.3, event: Self.message("e2", to: "a"), effects: ["reply execution e2:submitted"]),
            Row(at: 0.4, event: .killExecution(actor: "a", execution: "e2", stored: nil), effects: ["finish e2:error/1", "ended e2:error", "reply execution e2:error"]),
            Row(at: 1, event: .heartbeat(PropletHeartbeat(propletId: "p1", status: .online, seq: 1, workers: [WorkerBeat(workerId: "w-1", running: "e1/1")]), stored: [:]),
                effects: []),
            Row(at: 2, event: .heartbeat(beat2, stored: [:]), effects: []),
            Row(at: 4, event: .heartbeat(beat2, stored: [:]), effects: []),
            Row(at: 4.5, event: .tick(brokerLink: nil), effects: ["proplet p1:disconnected"]),
            Row(at: 6, event: .heartbeat(beat2, stored: [:]), effects: []),
            Row(at: 7.6, event: .tick(brokerLink: nil),
                effects: ["proplet p1:lost", "delete worker w-1", "execution e1:submitted/2", "worker w-2:requested@p2", "prepare w-2@p2"]),
            Row(at: 8, event: .workerReport(WorkerReport(propletId: "p2", workerId: "w-2", status: .ready)), effects: ["worker w-2:ready@p2", "run e1/2 on w-2@p2"]),
            Row(at: 8.5, event: Self.executed("e1", 1, on: "w-1", at: "p1"), effects: []),
            Row(at: 9, event: Self.executed("e1", 2, on: "w-2", at: "p2"), effects: ["finish e1:complete/2", "ended e1:complete"]),
        ], &h)
        #expect(h.state.actors.executions.isEmpty)
        #expect(h.state.ledger.allocation(of: .worker("w-2"))?.proplet == "p2")
        #expect(h.state.ledger.allocation(of: .worker("w-1")) == nil)
    }

    /// A stateful actor's state follows its completed executions; a run whose message the inbox
    /// no longer has ends and the next runs; one the store cannot read now waits at the front.
    @Test func statefulActorsAndUnreadableMessages() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1")), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.actor("s", stateless: false), effects: ["worker w-1:requested@p1", "prepare w-1@p1", "reply actor s:submitted"]),
            Row(at: 0.1, event: .workerReport(WorkerReport(propletId: "p1", workerId: "w-1", status: .ready)), effects: ["worker w-1:ready@p1", "actor s:ready"]),
            Row(at: 0.2, event: Self.message("e1", to: "s"), effects: ["run e1/1 on w-1@p1", "reply execution e1:running"]),
            Row(at: 0.3, event: Self.message("e2", to: "s"), effects: ["reply execution e2:submitted"]),
            Row(at: 0.4, event: Self.message("e3", to: "s"), effects: ["reply execution e3:submitted"]),
            Row(at: 0.5, event: .messageUnreadable("e1", missing: true), effects: ["run e2/1 on w-1@p1"]),
            Row(at: 0.6, event: .messageUnreadable("e2", missing: false), effects: []),
            Row(at: 1, event: .autoscale, effects: ["run e2/1 on w-1@p1"]),
        ], &h)
        var report = ExecutionReport(propletId: "p1", workerId: "w-1", executionId: "e2", attempt: 1,
                                     outcome: Self.result("e2", 1, on: "p1", .completed), results: Data())
        report.state = #"{"n":1}"#
        #expect(try h.step(.executionReport(report), at: 2) == [#"state s={"n":1}"#, "finish e2:complete/1", "ended e2:complete", "run e3/1 on w-1@p1"])
        #expect(h.state.actors.states["s"] == #"{"n":1}"#)
        let run = try #require(try h.state.apply(.autoscale, at: Self.at(3)).isEmpty ? h.state.actors.executions["e3"] : nil)
        #expect(run.status == .running)
    }

    /// Actor workers share the allocation table: a worker's room is room no task gets.
    @Test func workersAndTasksShareTheAllocationTable() throws {
        var h = Harness()
        try Self.run([
            Row(at: 0, event: .announced(Self.announcement("p1", memory: 2 * Self.gib)), effects: ["proplet p1:alive"]),
            Row(at: 0, event: Self.actor("a", memory: 2 * Self.gib), effects: ["worker w-1:requested@p1", "prepare w-1@p1", "reply actor a:submitted"]),
            Row(at: 0, event: Self.created(Self.spec("t"), id: "t", start: true), effects: ["save t:pending/1", "reply t:pending"]),
            // The worker is gone: the task takes its room before a replacement asks for it.
            Row(at: 1, event: .workerReport(WorkerReport(propletId: "p1", workerId: "w-1", status: .stopped)),
                effects: ["delete worker w-1", "save t:scheduled/1", "start t/1@p1#0"]),
        ], &h)
        #expect(h.state.actors.workers.values.map { $0.reason != nil } == [true], "the replacement waits for room")
    }

    /// A task's status carries only its own data: a proplet once placed, a phase only while
    /// placed; the flat wire form (state, assigned_proplet, phase) reads back to the same status,
    /// and a placed state that lost its proplet reads as pending.
    @Test func aTaskStatusHoldsOnlyItsOwnData() throws {
        var t = TaskRecord(id: "t", spec: Self.spec("t"), createdAt: 1)
        t.status = .running(on: "p1", phase: "running")
        let encoded = try WireCoding.encode(t)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(encoded)) as? [String: Any])
        #expect(object["state"] as? String == "running" && object["assigned_proplet"] as? String == "p1" && object["phase"] as? String == "running")
        #expect(try WireCoding.decode(TaskRecord.self, from: encoded) == t)
        #expect(TaskStatus(state: .scheduled, proplet: nil, phase: "pulling") == .pending)
        #expect(TaskStatus(state: .completed, proplet: "p1", phase: "running") == .completed(on: "p1"))
        #expect(TaskStatus.pending.with(phase: "pulling") == .pending)
        #expect(TaskStatus.ended(.running, on: nil) == .failed(on: nil))
    }

    /// Likewise a worker's: a reason only while it waits, a proplet once it has room, an
    /// execution only while busy or retiring after one.
    @Test func aWorkerStateHoldsOnlyItsOwnData() throws {
        var w = WorkerRecord(id: "w", actorId: "a", revision: 1, createdAt: 1)
        #expect(w.status == .requested && w.propletId == nil)
        w.state = .busy(on: "p1", execution: "e1")
        let encoded = try WireCoding.encode(w)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(encoded)) as? [String: Any])
        #expect(object["status"] as? String == "busy" && object["proplet_id"] as? String == "p1" && object["execution_id"] as? String == "e1")
        #expect(try WireCoding.decode(WorkerRecord.self, from: encoded) == w)
        #expect(w.state.idle == .ready(on: "p1"))
        #expect(WorkerState.shuttingDown(on: "p1", execution: "e1").idle == .shuttingDown(on: "p1", execution: nil))
        #expect(WorkerState(status: .busy, proplet: "p1", execution: nil, reason: nil) == .ready(on: "p1"))
        #expect(WorkerState(status: .ready, proplet: nil, execution: nil, reason: "no room") == .waiting(reason: "no room"))
    }

    // MARK: Reference model

    /// What a task is, in the reference model.
    enum Where: Equatable {
        case pending
        case placed(String)
        case unknown(String)
        case done(TaskState)
    }

    /// A small, independent model of task attempts: a handful of rules, applied to the event and
    /// then to the proplet state changes and starts the effects announce, in their order.
    struct Model {
        struct Task {
            var place: Where
            var attempt: Int
            var retries: Int
            var stopRequested = false
            /// Failed with its lost proplet, without a result: a late result of this attempt from
            /// that proplet still counts.
            var givenUp: (attempt: Int, proplet: String)?
        }
        var tasks: [String: Task] = [:]
        var violations: [String] = []

        mutating func requeueOrFail(_ id: String, result: Bool) {
            guard var t = tasks[id] else { return }
            if t.attempt < t.retries && !t.stopRequested {
                t.attempt += 1
                t.place = .pending
            } else {
                t.place = .done(t.stopRequested && !result ? .stopped : .failed)
            }
            tasks[id] = t
        }

        func on(_ proplet: String, _ t: Task) -> Bool { t.place == .placed(proplet) || t.place == .unknown(proplet) }

        mutating func event(_ e: ClusterEvent, refused: Bool) {
            switch e {
            case .created(let t):
                tasks[t.id] = Task(place: .pending, attempt: 1, retries: t.spec.restartPolicy.mode == .onFailure ? t.spec.restartPolicy.maxAttempts : 1)
            case .start(let id, _):
                guard var t = tasks[id] else { return }
                guard case .done = t.place else {
                    if !refused { violations.append("start of active \(id) accepted") }
                    return
                }
                t.place = .pending
                t.attempt += 1
                t.stopRequested = false
                t.givenUp = nil
                tasks[id] = t
            case .stop(let id, _, _, _):
                guard var t = tasks[id] else { return }
                switch t.place {
                case .pending: t.place = .done(.stopped)
                case .placed, .unknown: t.stopRequested = true
                case .done: if !refused { violations.append("stop of finished \(id) accepted") }
                }
                tasks[id] = t
            case .result(let r, _):
                guard var t = tasks[r.taskId] else { return }
                if t.attempt == r.attempt && on(r.propletId, t) {
                    if r.state == .failed {
                        requeueOrFail(r.taskId, result: true)
                    } else {
                        t.place = .done(r.state)
                        tasks[r.taskId] = t
                    }
                } else if let g = t.givenUp, g.attempt == r.attempt, g.proplet == r.propletId, t.attempt == r.attempt {
                    t.place = .done(r.state)
                    t.givenUp = nil
                    tasks[r.taskId] = t
                }
            default: break
            }
        }

        /// Proplet state changes and starts, in the order the transition emitted them.
        /// Proplets that said they are draining (from their stored records).
        var draining: Set<String> = []

        mutating func effects(_ effects: [ClusterEffect], connectionsBefore: [String: PropletConnection]) {
            var connection = connectionsBefore.mapValues(\.name)
            for effect in effects {
                switch effect {
                case .saveProplet(let p):
                    let before = connection[p.id]
                    connection[p.id] = p.state
                    if p.draining == true { draining.insert(p.id) } else { draining.remove(p.id) }
                    if p.state == "disconnected" && before == "alive" {
                        for (id, t) in tasks where t.place == .placed(p.id) { tasks[id]?.place = .unknown(p.id) }
                    } else if p.state == "alive" && before == "disconnected" {
                        for (id, t) in tasks where t.place == .unknown(p.id) { tasks[id]?.place = .placed(p.id) }
                    } else if p.state == "lost" && before != "lost" {
                        for (id, t) in tasks.sorted(by: { $0.key < $1.key }) where on(p.id, t) {
                            let retried = t.attempt < t.retries && !t.stopRequested
                            requeueOrFail(id, result: false)
                            if !retried && tasks[id]?.place == .done(.failed) { tasks[id]?.givenUp = (t.attempt, p.id) }
                        }
                    }
                case .start(let s, let p):
                    guard let t = tasks[s.taskId] else { violations.append("start of unknown \(s.taskId)"); continue }
                    guard t.attempt == s.attempt && (t.place == .pending || t.place == .placed(p)) else {
                        violations.append("start \(s.taskId)/\(s.attempt)@\(p) while the model has \(t.place) attempt \(t.attempt)")
                        continue
                    }
                    if connection[p] != "alive" { violations.append("start on \(p), which is \(connection[p] ?? "unknown")") }
                    if draining.contains(p) { violations.append("start on \(p), which is draining") }
                    tasks[s.taskId]?.place = .placed(p)
                default: break
                }
            }
        }
    }

    /// Long random sequences of events on two proplets: after each, every task is where the
    /// reference model says, and the allocation table, the pending queue and the epochs hold
    /// their invariants.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func theTransitionFunctionAgreesWithAReferenceModel(seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        var h = Harness()
        var model = Model()
        var now = 0.0
        var created = 0
        let proplets = ["p1", "p2"]
        for p in proplets { _ = try h.apply(.announced(Self.announcement(p)), at: now) }
        func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[Int(rng.next() % UInt64(items.count))] }
        for step in 0..<3000 {
            now += 0.05 + Double(rng.next() % 100) / 100
            let ids = model.tasks.keys.sorted()
            let event: ClusterEvent
            switch rng.next() % 100 {
            case 0..<14:
                created += 1
                event = Self.created(Self.spec("t\(created)", retries: Int(rng.next() % 3) + 1), id: "t\(created)", start: true)
            case 14..<20:
                guard let id = pick(ids) else { continue }
                event = .stop(id, signal: 15, grace: Double(rng.next() % 3), stored: nil)
            case 20..<23:
                guard let id = pick(ids) else { continue }
                event = .start(id, stored: nil)
            case 23..<43:
                // A result of what runs, or (a fifth of the time) a stale or misrouted one.
                let placed = ids.compactMap { id -> (String, Int, String)? in
                    switch model.tasks[id]?.place {
                    case .placed(let p), .unknown(let p): (id, model.tasks[id]?.attempt ?? 0, p)
                    default: nil
                    }
                }
                guard let picked = pick(placed) ?? pick(ids).map({ ($0, 1, "p1") }) else { continue }
                let id = picked.0
                var (attempt, p) = (picked.1, picked.2)
                if rng.next() % 5 == 0 { attempt = max(1, attempt - 1); p = pick(proplets) ?? p }
                let state: TaskState = [.completed, .failed, .failed, .stopped][Int(rng.next() % 4)]
                event = .result(Self.result(id, attempt, on: p, state), stored: nil)
            case 43..<50:
                let placed = ids.filter { if case .placed = model.tasks[$0]?.place { true } else { false } }
                guard let id = pick(placed), case .placed(let p) = model.tasks[id]?.place else { continue }
                event = .phase(TaskEvent(taskId: id, attempt: model.tasks[id]?.attempt ?? 0, propletId: p, phase: .running, at: now))
            case 50..<80:
                // An honest heartbeat: what the model has there (a lost proplet's, nothing).
                guard let p = pick(proplets) else { continue }
                let lost = h.state.connections[p]?.isLost ?? false
                let running = lost ? [] : ids.compactMap { id -> (String, Int)? in
                    guard let t = model.tasks[id], model.on(p, t) else { return nil }
                    return (id, t.attempt)
                }
                var hb = Self.beat(p, running: running, awaitingEpoch: rng.next() % 4 == 0)
                if rng.next() % 8 == 0 { hb.status = .draining }
                event = .heartbeat(hb, stored: [:])
            case 80..<84:
                guard let p = pick(proplets) else { continue }
                event = .heartbeat(PropletHeartbeat(propletId: p, status: .offline), stored: [:])
            case 84..<86:
                guard let p = pick(proplets) else { continue }
                event = .givenUp(proplet: p, reason: "an operator's decision")
            case 86..<88:
                guard let p = pick(proplets) else { continue }
                event = .announced(Self.announcement(p))
            default:
                now += Double(rng.next() % 400) / 100
                event = .tick(brokerLink: nil)
            }
            let before = h.state.connections
            var current: TaskRecord?
            if case .result(let r, _) = event { current = h.state.active[r.taskId] }
            let effects: [ClusterEffect]
            do {
                effects = try h.apply(event, at: now)
                model.event(event, refused: false)
            } catch {
                model.event(event, refused: true)
                effects = []
            }
            model.effects(effects, connectionsBefore: before)
            let problems = check(h, model, event: event, effects: effects, current: current)
            if !problems.isEmpty || !model.violations.isEmpty {
                Issue.record("seed \(seed), step \(step): \(event) → \(effects.compactMap(Self.describe)): \(problems + model.violations)")
                return
            }
        }
        #expect(created > 100)
        let ends = Set(model.tasks.values.compactMap { if case .done(let s) = $0.place { s } else { nil } })
        #expect(ends == [.completed, .failed, .stopped], "the sequence reached only \(ends)")
    }

    /// The model's view, and the invariants of the state, after one step.
    func check(_ h: Harness, _ model: Model, event: ClusterEvent, effects: [ClusterEffect], current: TaskRecord?) -> [String] {
        var problems: [String] = []
        func expect(_ condition: Bool, _ what: String) { if !condition { problems.append(what) } }
        let s = h.state
        for (id, m) in model.tasks {
            guard let t = h.task(id) else { problems.append("no task \(id)"); continue }
            let place: Where = switch t.state {
            case .pending: .pending
            case .scheduled, .running: .placed(t.assignedProplet ?? "-")
            case .unknown: .unknown(t.assignedProplet ?? "-")
            default: .done(t.state)
            }
            expect(place == m.place && t.attempt == m.attempt, "\(id): the state has \(place) attempt \(t.attempt), the model \(m.place) attempt \(m.attempt)")
            // The store has what the state has.
            if let active = s.active[id] { expect(h.stored[id] == active || h.stored[id]?.state == active.state, "\(id): store and state differ") }
        }
        // The pending queue is exactly the pending tasks, once each.
        expect(s.pendingQueue.count == Set(s.pendingQueue).count, "duplicates in the pending queue")
        expect(Set(s.pendingQueue) == Set(s.active.values.filter { $0.state == .pending }.map(\.id)), "pending queue")
        // Every placed task holds exactly its reservation on its proplet, and nothing else does.
        for node in s.ledger.nodes {
            let placed = s.active.values.filter { $0.state.isPlaced && $0.assignedProplet == node.id }
            expect(node.allocated == placed.reduce(Resources.zero) { $0 + $1.spec.resources }, "\(node.id) allocated")
            expect(Int(node.taskCount) == placed.count, "\(node.id) task count")
            if s.connections[node.id]?.isLost == true { expect(placed.isEmpty, "work on lost \(node.id)") }
        }
        // Starts carry the epoch of their proplet; acknowledgements follow the write of the result.
        for case .start(let start, let p) in effects { expect(start.epoch == s.proplets[p]?.epoch ?? 0, "start epoch") }
        // A result of the attempt that ran there is stored with the task before it is acknowledged.
        if case .result(let r, _) = event, let current, current.attempt == r.attempt, current.assignedProplet == r.propletId {
            expect(effects.contains(.acknowledge(r.ref, to: r.propletId)), "\(r.taskId): result not acknowledged")
            expect(h.stored[r.taskId]?.result == r, "\(r.taskId): acknowledged without the result stored")
        }
        return problems
    }
}

@Suite("Cluster state: named volumes")
struct NamedVolumeStateTests {
    @Test func aHeartbeatsNamedVolumesAreKeptWithItsProplet() throws {
        var state = ClusterStateTests.newState()
        var beat = ClusterStateTests.beat("p")
        beat.volumes = [NamedVolumeInfo(name: "cache", sizeBytes: 5, inUse: 1)]
        let effects = try state.apply(.heartbeat(beat, stored: [:]), at: ClusterStateTests.at(1))
        #expect(state.propletList().first?.volumes == beat.volumes)
        #expect(effects.contains { if case .saveProplet(let p) = $0 { p.volumes == beat.volumes } else { false } })
        beat.volumes = nil
        _ = try state.apply(.heartbeat(beat, stored: [:]), at: ClusterStateTests.at(2))
        #expect(state.propletList().first?.volumes == nil)
    }
}
