import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

/// The actor layer's transitions under long random sequences: proplets played by a small model
/// of what each one really has (workers prepared there, executions running), which restarts,
/// goes silent, loses reports and sends stale ones. After every event the state's invariants
/// hold; at the end, once the fleet is healthy again, every message has ended exactly once.
@Suite struct ActorModelTests {
    typealias C = ClusterStateTests

    /// What the proplets really have.
    struct Fleet {
        /// Per proplet: workers prepared there (ready or not), and what each runs.
        var workers: [String: Set<String>] = [:]
        var ready: Set<String> = []
        var running: [String: (execution: String, attempt: Int, proplet: String)] = [:]
        /// Retired workers whose "stopped" report is due.
        var retired: [String: String] = [:]
        /// Runs sent to a worker its proplet does not have.
        var missing: [(ExecutionCommand, String)] = []
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func messagesEndExactlyOnceWhateverHappensToTheirWorkers(seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        var state = C.newState()
        var fleet = Fleet()
        var now = 0.0
        var ended: [String: Int] = [:]
        var queued: [String] = []
        var deleted: Set<String> = []
        var problems: [String] = []
        let proplets = ["p1", "p2", "p3"]
        let actorIDs = ["a", "b", "s"]
        func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[Int(rng.next() % UInt64(items.count))] }

        /// Applies an event, plays the proplets' side of its effects, checks the invariants.
        func step(_ event: ClusterEvent) {
            guard let effects = try? state.apply(event, at: C.at(now)) else { return }  // a refused command changes nothing
            for effect in effects {
                switch effect {
                case .worker(let c, let p):
                    switch c.action {
                    case .prepare: fleet.workers[p, default: []].insert(c.workerId)
                    case .retire:
                        if fleet.workers[p]?.remove(c.workerId) != nil { fleet.retired[c.workerId] = p }
                        fleet.ready.remove(c.workerId)
                    }
                case .execution(let c, let p):
                    guard c.action == .run else { continue }
                    if fleet.workers[p]?.contains(c.workerId) == true {
                        fleet.running[c.workerId] = (c.executionId, c.attempt, p)
                    } else {
                        fleet.missing.append((c, p))
                    }
                    if c.attempt > 2 { problems.append("\(c.executionId) run a third time") }
                    if ended[c.executionId] != nil { problems.append("\(c.executionId) run after it ended") }
                case .ended(let e):
                    ended[e.id, default: 0] += 1
                    if ended[e.id] == 2 { problems.append("\(e.id) ended twice") }
                default: continue
                }
            }
            problems += Self.invariants(state)
        }

        for p in proplets { step(.announced(C.announcement(p, memory: 2 * C.gib))) }
        step(C.actor("a", memory: C.gib / 2, minWorkers: 0, maxWorkers: 3))
        step(C.actor("b", memory: C.gib, minWorkers: 1, maxWorkers: 2))
        step(C.actor("s", memory: C.gib / 2, minWorkers: 1, maxWorkers: 1, stateless: false))
        var silent: Set<String> = []
        var sent = 0
        for _ in 0..<2500 {
            now += 0.02 + Double(rng.next() % 60) / 100
            switch rng.next() % 100 {
            case 0..<20:
                guard let a = pick(actorIDs.filter { !deleted.contains($0) }) else { continue }
                sent += 1
                queued.append("e\(sent)")
                step(C.message("e\(sent)", to: a))
            case 20..<35:
                // A prepared worker says it is ready (or pulling, or fails now and then).
                guard let (p, w) = pick(fleet.workers.flatMap { p, ws in ws.filter { !fleet.ready.contains($0) }.map { (p, $0) } }.sorted { $0.1 < $1.1 }) else { continue }
                let status: WorkerReport.Status = rng.next() % 30 == 0 ? .error : rng.next() % 5 == 0 ? .pulling : .ready
                if status == .ready { fleet.ready.insert(w) }
                if status == .error { fleet.workers[p]?.remove(w) }
                step(.workerReport(WorkerReport(propletId: p, workerId: w, status: status, error: status == .error ? "pull failed" : nil)))
            case 35..<55:
                // A running execution ends; its report is lost now and then, or sent twice.
                guard let (w, run) = pick(fleet.running.sorted { $0.key < $1.key }) else { continue }
                fleet.running[w] = nil
                guard rng.next() % 8 != 0 else { continue }
                let outcome: TaskState = rng.next() % 4 == 0 ? .failed : .completed
                var report = ExecutionReport(propletId: run.proplet, workerId: w, executionId: run.execution, attempt: run.attempt,
                                             outcome: C.result(run.execution, run.attempt, on: run.proplet, outcome), results: Data())
                report.state = #"{"last":"\#(run.execution)"}"#
                step(.executionReport(report))
                if rng.next() % 6 == 0 { step(.executionReport(report)) }
            case 55..<60:
                // A run sent to a worker its proplet did not have comes back as such.
                guard !fleet.missing.isEmpty else { continue }
                let (c, p) = fleet.missing.removeFirst()
                step(.executionReport(ExecutionReport(propletId: p, workerId: c.workerId, executionId: c.executionId, attempt: c.attempt,
                                                      outcome: C.result(c.executionId, c.attempt, on: p, .failed), workerMissing: true)))
            case 60..<64:
                guard let (w, p) = pick(fleet.retired.sorted { $0.key < $1.key }) else { continue }
                fleet.retired[w] = nil
                step(.workerReport(WorkerReport(propletId: p, workerId: w, status: .stopped)))
            case 64..<84:
                guard let p = pick(proplets.filter { !silent.contains($0) }) else { continue }
                let beats = (fleet.workers[p] ?? []).sorted().map { w in
                    WorkerBeat(workerId: w, running: fleet.running[w].map { "\($0.execution)/\($0.attempt)" })
                }
                step(.heartbeat(PropletHeartbeat(propletId: p, status: .online, seq: 1, announcement: C.announcement(p, memory: 2 * C.gib), workers: beats), stored: [:]))
            case 84..<87:
                // A proplet restarts: its workers and what they ran are gone.
                guard let p = pick(proplets) else { continue }
                for w in fleet.workers[p] ?? [] {
                    fleet.ready.remove(w)
                    fleet.running[w] = nil
                    fleet.retired[w] = nil
                }
                fleet.workers[p] = []
                silent.remove(p)
                step(.announced(C.announcement(p, memory: 2 * C.gib)))
            case 87..<89:
                // A proplet goes silent (or speaks again).
                guard let p = pick(proplets) else { continue }
                if silent.contains(p) { silent.remove(p) } else { silent.insert(p) }
            case 89..<91:
                guard let a = pick(actorIDs.filter { !deleted.contains($0) }), let id = state.actors.executions.values.filter({ $0.actorId == a }).map(\.id).sorted().first else { continue }
                step(.killExecution(actor: a, execution: id, stored: nil))
            case 91..<92:
                // A new image: the workers are replaced.
                guard let a = pick(actorIDs.filter { !deleted.contains($0) }),
                      let changed = try? state.updatedActor(a, at: now, { $0.image += "1" }) else { continue }
                step(.actorUpdated(changed))
            case 92..<93:
                guard rng.next() % 4 == 0, let a = pick(actorIDs.filter { !deleted.contains($0) && $0 != "s" }) else { continue }
                deleted.insert(a)
                step(.actorDeleted(a))
            case 93..<97: step(.tick(brokerLink: nil))
            default: step(.autoscale)
            }
            if !problems.isEmpty { break }
        }

        // The fleet heals: every proplet speaks, actors in error get a new image, workers get
        // ready, runs end, until nothing waits.
        silent = []
        for a in actorIDs where state.actors.records[a]?.status == .error {
            if let changed = try? state.updatedActor(a, at: now, { $0.image += "-fixed" }) { step(.actorUpdated(changed)) }
        }
        for _ in 0..<400 where !state.actors.executions.isEmpty && problems.isEmpty {
            now += 0.3
            for p in proplets {
                let beats = (fleet.workers[p] ?? []).sorted().map { WorkerBeat(workerId: $0, running: fleet.running[$0].map { "\($0.execution)/\($0.attempt)" }) }
                step(.heartbeat(PropletHeartbeat(propletId: p, status: .online, seq: 1, announcement: C.announcement(p, memory: 2 * C.gib), workers: beats), stored: [:]))
            }
            for (p, ws) in fleet.workers.sorted(by: { $0.key < $1.key }) {
                for w in ws.sorted() where !fleet.ready.contains(w) {
                    fleet.ready.insert(w)
                    step(.workerReport(WorkerReport(propletId: p, workerId: w, status: .ready)))
                }
            }
            for (w, run) in fleet.running.sorted(by: { $0.key < $1.key }) {
                fleet.running[w] = nil
                step(.executionReport(ExecutionReport(propletId: run.proplet, workerId: w, executionId: run.execution, attempt: run.attempt,
                                                      outcome: C.result(run.execution, run.attempt, on: run.proplet, .completed), results: Data())))
            }
            while !fleet.missing.isEmpty {
                let (c, p) = fleet.missing.removeFirst()
                step(.executionReport(ExecutionReport(propletId: p, workerId: c.workerId, executionId: c.executionId, attempt: c.attempt,
                                                      outcome: C.result(c.executionId, c.attempt, on: p, .failed), workerMissing: true)))
            }
            for (w, p) in fleet.retired.sorted(by: { $0.key < $1.key }) {
                fleet.retired[w] = nil
                step(.workerReport(WorkerReport(propletId: p, workerId: w, status: .stopped)))
            }
            step(.tick(brokerLink: nil))
            step(.autoscale)
        }
        #expect(problems.isEmpty, "seed \(seed): \(problems.prefix(5))")
        #expect(state.actors.executions.count == 0, "seed \(seed): messages still waiting: \(state.actors.executions.values.map { "\($0.id):\($0.status)" }.sorted().prefix(5))")
        let lost = queued.filter { ended[$0] != 1 }
        #expect(lost.isEmpty, "seed \(seed): messages that did not end exactly once: \(lost.prefix(5))")
        #expect(sent > 300, "the run sent enough messages to mean something")
    }

    /// What must hold after every event: each worker with a proplet holds its room there and
    /// nothing else holds room for a worker; a busy worker runs an execution that says it runs
    /// there; each queued execution is queued once; nothing is queued for an actor that is gone.
    static func invariants(_ s: ClusterState) -> [String] {
        var problems: [String] = []
        for w in s.actors.workers.values {
            let held = s.ledger.allocation(of: .worker(w.id))?.proplet
            if held != w.propletId { problems.append("worker \(w.id) on \(w.propletId ?? "-") holds room on \(held ?? "-")") }
            // A retiring worker finishes its execution first.
            if w.status == .busy || (w.status == .shuttingDown && w.executionId != nil) {
                guard let eid = w.executionId, let e = s.actors.executions[eid], e.status == .running, e.workerId == w.id else {
                    problems.append("worker \(w.id) busy with \(w.executionId ?? "-"), which does not run there")
                    continue
                }
            } else if w.executionId != nil {
                problems.append("worker \(w.id) is \(w.status.rawValue) with an execution")
            }
            if s.actors.records[w.actorId] == nil && w.status != .shuttingDown { problems.append("worker \(w.id) of a deleted actor is \(w.status.rawValue)") }
        }
        for node in s.ledger.nodes {
            for case .worker(let id) in s.ledger.holders(on: node.id) where s.actors.workers[id]?.propletId != node.id {
                problems.append("room on \(node.id) held for worker \(id), which is not there")
            }
        }
        var seen: Set<String> = []
        for (actor, queue) in s.actors.queues {
            for id in queue.ids {
                guard seen.insert(id).inserted else {
                    problems.append("\(id) queued twice")
                    continue
                }
                guard let e = s.actors.executions[id], e.actorId == actor, e.status == .submitted else {
                    problems.append("\(id) queued for \(actor) but \(s.actors.executions[id].map { "\($0.status.rawValue)" } ?? "not active")")
                    continue
                }
            }
        }
        for e in s.actors.executions.values {
            switch e.status {
            case .submitted: if !seen.contains(e.id) { problems.append("\(e.id) submitted but not queued") }
            case .running:
                if s.actors.workers[e.workerId ?? ""]?.executionId != e.id { problems.append("\(e.id) runs on \(e.workerId ?? "-"), which is not busy with it") }
            default: problems.append("\(e.id) is \(e.status.rawValue) but still active")
            }
        }
        return problems
    }
}
