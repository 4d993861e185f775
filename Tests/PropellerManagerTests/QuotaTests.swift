import Foundation
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

/// Namespaces' quotas in the transition function: a task over its namespace's quota waits with
/// the reason, other namespaces are not held back, and room comes back when a task ends or the
/// quota is raised.
@Suite struct QuotaTests {
    typealias T = ClusterStateTests

    static func spec(_ name: String, _ namespace: String?, memory: UInt64 = T.gib) -> TaskSpec {
        var s = T.spec(name, memory: memory)
        s.namespace = namespace
        return s
    }

    @Test func tasksOverTheirNamespacesQuotaWaitAndOthersDoNot() throws {
        var h = T.Harness()
        try T.run([
            T.Row(at: 0, event: .announced(T.announcement("p1", memory: 16 * T.gib, tasks: 10)), effects: ["proplet p1:alive"]),
            T.Row(at: 0, event: .quotas(["team-a": NamespaceQuota(memoryBytes: 2 * T.gib + T.gib / 2, runningTasks: 5)]), effects: []),
            T.Row(at: 0.1, event: T.created(Self.spec("a1", "team-a"), id: "a1", start: true), effects: ["save a1:scheduled/1", "start a1/1@p1#0", "reply a1:scheduled"]),
            T.Row(at: 0.2, event: T.created(Self.spec("a2", "team-a"), id: "a2", start: true), effects: ["save a2:scheduled/1", "start a2/1@p1#0", "reply a2:scheduled"]),
            // Room for 0.5 GiB more in team-a: a third 1 GiB task waits, saying why.
            T.Row(at: 0.3, event: T.created(Self.spec("a3", "team-a"), id: "a3", start: true), effects: ["save a3:pending/1", "reply a3:pending"]),
            // Another namespace (and default) is not held back by team-a's quota.
            T.Row(at: 0.4, event: T.created(Self.spec("b1", "team-b", memory: 4 * T.gib), id: "b1", start: true),
                  effects: ["save b1:scheduled/1", "start b1/1@p1#0", "reply b1:scheduled"]),
            T.Row(at: 0.5, event: T.created(Self.spec("d1", nil, memory: 4 * T.gib), id: "d1", start: true),
                  effects: ["save d1:scheduled/1", "start d1/1@p1#0", "reply d1:scheduled"]),
            // a1 ends: its room goes to a3.
            T.Row(at: 1, event: .result(T.result("a1", 1, on: "p1", .completed), stored: nil),
                  effects: ["save a1:completed/1", "ack a1/1@p1", "save a3:scheduled/1", "start a3/1@p1#0"]),
            // A fourth waits again; raising the quota places it at once.
            T.Row(at: 1.1, event: T.created(Self.spec("a4", "team-a"), id: "a4", start: true), effects: ["save a4:pending/1", "reply a4:pending"]),
        ], &h)
        #expect(h.task("a4")?.reason == "namespace team-a is at its memory quota: 2 GiB of 2.5 GiB in use", "\(h.task("a4")?.reason ?? "")")
        let effects = try h.step(.quotas(["team-a": NamespaceQuota(memoryBytes: 4 * T.gib, runningTasks: 3)]), at: 2)
        #expect(effects == ["save a4:scheduled/1", "start a4/1@p1#0"])
        // The running-task limit: three placed now, a fifth waits for that reason.
        _ = try h.step(T.created(Self.spec("a5", "team-a", memory: T.gib / 4), id: "a5", start: true), at: 3)
        #expect(h.task("a5")?.state == .pending)
        #expect(h.task("a5")?.reason == "namespace team-a is at its running-task quota: 3 of 3 placed")
        // No quota: nothing waits for one.
        let freed = try h.step(.quotas([:]), at: 4)
        #expect(freed == ["save a5:scheduled/1", "start a5/1@p1#0"])
    }

    /// Actor workers count in their namespace's quota: by number (`workers`), and their room
    /// in its CPU and memory as a task's does.
    @Test func actorWorkersCountInTheirNamespacesQuota() throws {
        var h = T.Harness()
        _ = try h.step(.announced(T.announcement("p1", memory: 16 * T.gib, tasks: 10)), at: 0)
        _ = try h.step(.quotas(["team-a": NamespaceQuota(memoryBytes: 3 * T.gib, workers: 1)]), at: 0)
        var spec = ActorSpec(name: "a", image: "127.0.0.1:5000/actor:v1", resources: Resources(memoryBytes: T.gib), minWorkers: 2, maxWorkers: 2)
        spec.namespace = "team-a"
        let effects = try h.step(.actorCreated(ClusterState.newActor(spec, id: "a", at: 1_800_000_000, configuration: T.configuration)), at: 0.1)
        #expect(effects.filter { $0.hasPrefix("prepare") } == ["prepare w-1@p1"], "\(effects)")
        let waiting = h.state.actors.workers.values.filter { $0.propletId == nil }
        #expect(waiting.count == 1 && waiting.first?.reason == "namespace team-a is at its worker quota: 1 of 1 placed", "\(waiting)")
        // The placed worker's 1 GiB counts: a 2.5 GiB task waits with 3 GiB allowed.
        _ = try h.step(T.created(Self.spec("t", "team-a", memory: 5 * T.gib / 2), id: "t", start: true), at: 0.2)
        #expect(h.task("t")?.reason == "namespace team-a is at its memory quota: 1 GiB of 3 GiB in use", "\(h.task("t")?.reason ?? "")")
        // Another namespace's actor is not held back.
        _ = try h.step(T.actor("free"), at: 0.3)
        #expect(h.state.actors.workers.values.contains { $0.actorId == "free" && $0.propletId == "p1" })
        // A second worker allowed: the autoscaler's next pass places it.
        _ = try h.step(.quotas(["team-a": NamespaceQuota(memoryBytes: 3 * T.gib, workers: 2)]), at: 1)
        let placed = try h.step(.autoscale, at: 1.1)
        #expect(placed.contains("prepare w-2@p1"), "\(placed)")
        #expect(NamespaceQuota(workers: 2).summary == "workers 2")
    }

    @Test func aQuotaSaysWhatCanNeverRunAndHowItReadsAndIsStored() throws {
        let q = NamespaceQuota(cpuMillis: 1500, memoryBytes: T.gib)
        #expect(q.never(Resources(cpuMillis: 2000, memoryBytes: 1), in: "x") == "namespace x's CPU quota is 1.5 CPU: a task asking for 2 CPU can never run there")
        #expect(q.never(Resources(cpuMillis: 0, memoryBytes: 2 * T.gib), in: "x")?.contains("memory quota is 1 GiB: a task asking for 2 GiB") == true)
        #expect(q.never(Resources(cpuMillis: 1500, memoryBytes: T.gib), in: "x") == nil)
        #expect(NamespaceQuota.cpus(250) == "0.25 CPU" && NamespaceQuota.cpus(3000) == "3 CPU")
        #expect(try NamespaceQuota.fromStore(NamespaceQuota.stored(q)) == q)
        #expect(NamespaceQuota().isEmpty && !q.isEmpty)
    }

    /// A proplet started with `--namespace team-a` takes team-a's work alone; the rest waits
    /// for another proplet, saying why.
    @Test func aPropletReservedForANamespaceTakesItsWorkAlone() throws {
        var h = T.Harness()
        var reserved = T.announcement("p1")
        reserved.namespaces = ["team-a"]
        _ = try h.step(.announced(reserved), at: 0)
        #expect(h.state.proplets["p1"]?.namespaces == ["team-a"])
        #expect(try h.step(T.created(Self.spec("a", "team-a"), id: "a", start: true), at: 0.1) == ["save a:scheduled/1", "start a/1@p1#0", "reply a:scheduled"])
        #expect(try h.step(T.created(Self.spec("d", nil), id: "d", start: true), at: 0.2) == ["save d:pending/1", "reply d:pending"])
        #expect(h.task("d")?.reason == "waiting for a proplet that takes namespace default's work (those that match are reserved for other namespaces)")
        // An open proplet takes it.
        let effects = try h.step(.announced(T.announcement("p2")), at: 1)
        #expect(effects == ["proplet p2:alive", "save d:scheduled/1", "start d/1@p2#0"])
    }
}
