import PropellerCore
@testable import PropellerManager
import Testing

@Suite("Scheduler")
struct SchedulerTests {
    static let gib: UInt64 = 1 << 30

    func node(_ id: String, memory: UInt64, cpu: UInt64 = 4000, tasks: UInt64 = 10, allocated: UInt64 = 0, alive: Bool = true, labels: [String: String] = [:]) -> PropletNode {
        PropletNode(id: id, labels: labels, capacity: Capacity(cpuMillis: cpu, memoryBytes: memory, pids: 10000, tasks: tasks),
                    allocated: Resources(memoryBytes: allocated), taskCount: allocated > 0 ? 1 : 0, alive: alive)
    }

    func request(memory: UInt64, cpu: UInt64 = 0) -> PlacementRequest { PlacementRequest(resources: Resources(cpuMillis: cpu, memoryBytes: memory)) }

    @Test func aTaskGoesWhereItFits() {
        var s = Scheduler(policy: .binpack)
        let nodes = [node("small", memory: 2 * Self.gib), node("big", memory: 4 * Self.gib)]
        #expect(s.place(request(memory: 3 * Self.gib), on: nodes) == .place(1))
    }

    @Test func binpackFillsTheFullestAndSpreadTheEmptiest() {
        let nodes = [node("empty", memory: 8 * Self.gib), node("half", memory: 8 * Self.gib, allocated: 4 * Self.gib)]
        var binpack = Scheduler(policy: .binpack)
        var spread = Scheduler(policy: .spread)
        #expect(binpack.place(request(memory: Self.gib), on: nodes) == .place(1))
        #expect(spread.place(request(memory: Self.gib), on: nodes) == .place(0))
    }

    @Test func roundRobinTakesTurns() {
        var s = Scheduler(policy: .roundRobin)
        let nodes = [node("a", memory: 8 * Self.gib), node("b", memory: 8 * Self.gib), node("c", memory: 8 * Self.gib)]
        let picks = (0..<4).map { _ in s.place(request(memory: Self.gib), on: nodes) }
        #expect(picks == [.place(0), .place(1), .place(2), .place(0)])
    }

    @Test func fullNodesMeanWaitAndTooBigMeansNever() {
        var s = Scheduler(policy: .binpack)
        let full = [node("a", memory: 4 * Self.gib, allocated: 3 * Self.gib)]
        guard case .wait(let reason) = s.place(request(memory: 2 * Self.gib), on: full) else { Issue.record("expected wait"); return }
        #expect(reason.contains("capacity"))
        guard case .never(let why) = s.place(request(memory: 5 * Self.gib), on: full) else { Issue.record("expected never"); return }
        #expect(why.contains("5 GiB"))
        // CPU counts too.
        guard case .never = s.place(request(memory: Self.gib, cpu: 8000), on: full) else { Issue.record("expected never for cpu"); return }
    }

    @Test func taskSlotsAreCapacity() {
        var s = Scheduler(policy: .binpack)
        var n = node("a", memory: 8 * Self.gib, tasks: 1)
        n.taskCount = 1
        guard case .wait = s.place(request(memory: Self.gib), on: [n]) else { Issue.record("expected wait"); return }
    }

    @Test func deadNodesAreSkippedButCountForNever() {
        var s = Scheduler(policy: .binpack)
        let nodes = [node("dead", memory: 8 * Self.gib, alive: false), node("alive", memory: 2 * Self.gib)]
        #expect(s.place(request(memory: Self.gib), on: nodes) == .place(1))
        guard case .wait(let reason) = s.place(request(memory: 4 * Self.gib), on: nodes) else { Issue.record("expected wait"); return }
        #expect(reason.contains("come back"))
    }

    @Test func constraintsAndPins() {
        var s = Scheduler(policy: .binpack)
        let nodes = [node("a", memory: 8 * Self.gib, labels: ["zone": "x"]), node("b", memory: 8 * Self.gib, labels: ["zone": "y"])]
        #expect(s.place(PlacementRequest(resources: Resources(memoryBytes: Self.gib), constraints: ["zone": "y"]), on: nodes) == .place(1))
        #expect(s.place(PlacementRequest(resources: Resources(memoryBytes: Self.gib), pinnedProplet: "a"), on: nodes) == .place(0))
        guard case .never = s.place(PlacementRequest(resources: Resources(memoryBytes: Self.gib), constraints: ["zone": "z"]), on: nodes) else {
            Issue.record("expected never"); return
        }
        guard case .wait = s.place(PlacementRequest(resources: Resources(memoryBytes: Self.gib), pinnedProplet: "later"), on: nodes) else {
            Issue.record("expected wait for an unknown pinned proplet"); return
        }
    }

    @Test func noPropletsYetMeansWait() {
        var s = Scheduler(policy: .binpack)
        guard case .wait(let reason) = s.place(request(memory: Self.gib), on: []) else { Issue.record("expected wait"); return }
        #expect(reason.contains("register"))
    }

    /// A name some proplet offers as a host volume goes only where it is offered (writable when
    /// the task writes); any other name is a named volume, made wherever the task runs.
    @Test func hostVolumesDecideWhereATaskMayGo() {
        var s = Scheduler(policy: .binpack)
        var data = node("data", memory: 4 * Self.gib)
        data.hostVolumes = ["input": true, "results": false]
        var other = node("other", memory: 8 * Self.gib, allocated: 4 * Self.gib)  // fuller: binpack would pick it
        other.hostVolumes = ["results": true]
        let nodes = [other, data]
        func asking(_ volumes: [VolumeMount]) -> PlacementRequest {
            PlacementRequest(resources: Resources(memoryBytes: Self.gib), volumes: volumes)
        }
        #expect(s.place(asking([VolumeMount(name: "input", target: "/in", readOnly: true)]), on: nodes) == .place(1))
        #expect(s.place(asking([VolumeMount(name: "results", target: "/out", readOnly: true)]), on: nodes) == .place(0), "read-only: both offer it")
        #expect(s.place(asking([VolumeMount(name: "results", target: "/out")]), on: nodes) == .place(1), "written: only where it is writable")
        #expect(s.place(asking([VolumeMount(name: "cache", target: "/cache")]), on: nodes) == .place(0), "a named volume goes anywhere")
        guard case .never(let reason) = s.place(asking([VolumeMount(name: "input", target: "/in")]), on: nodes) else {
            Issue.record("a task that writes a volume offered read-only everywhere is never placed")
            return
        }
        #expect(reason == "no proplet offers the host volumes input (writable)")
        var pinned = asking([VolumeMount(name: "input", target: "/in", readOnly: true)])
        pinned.pinnedProplet = "other"
        #expect(s.place(pinned, on: nodes) == .never("proplet other does not offer the host volumes input"))
        // Offered only by a proplet that is away: wait for it.
        var away = data
        away.alive = false
        guard case .wait = s.place(asking([VolumeMount(name: "input", target: "/in", readOnly: true)]), on: [other, away]) else {
            Issue.record("a host volume offered by a proplet that is away: wait")
            return
        }
    }
}
