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

    /// A CNI network goes only where it is offered; a fixed host port only where it is free; a
    /// picked one is free on the proplet and not picked twice.
    @Test func networksAndHostPortsDecideWhereATaskMayGo() {
        var s = Scheduler(policy: .binpack)
        var bridged = node("bridged", memory: 4 * Self.gib)
        bridged.networks = ["bridge"]
        bridged.usedPorts = [PortMapping(hostPort: 8080, containerPort: 80).hostKey]
        var other = node("other", memory: 8 * Self.gib, allocated: 4 * Self.gib)
        other.networks = ["bridge", "storage"]
        let plain = node("plain", memory: 16 * Self.gib)
        let nodes = [bridged, other, plain]
        func asking(_ network: String, _ ports: [PortMapping] = []) -> PlacementRequest {
            PlacementRequest(resources: Resources(memoryBytes: Self.gib), network: network, ports: ports)
        }
        #expect(s.place(asking("storage"), on: nodes) == .place(1))
        #expect(s.place(asking("none"), on: nodes) == .place(1), "binpack: the fullest")
        #expect(s.place(asking("bridge", [PortMapping(hostPort: 8080, containerPort: 80)]), on: nodes) == .place(1), "8080 is taken on bridged")
        #expect(s.place(asking("bridge", [PortMapping(hostPort: 8080, containerPort: 80, proto: "udp")]), on: nodes) == .place(1))
        #expect(s.place(asking("overlay"), on: nodes) == .never("no proplet offers the network overlay"))
        guard case .wait(let reason) = s.place(asking("bridge", [PortMapping(hostPort: 8080, containerPort: 80)]), on: [bridged]) else {
            Issue.record("a taken host port: wait")
            return
        }
        #expect(reason.contains("host port 8080/tcp"))

        var ledger = AllocationTable()
        ledger.upsert("p", labels: [:], capacity: Capacity(cpuMillis: 1000, memoryBytes: Self.gib, pids: 100, tasks: 10), alive: true, networks: ["bridge"])
        let first = ledger.resolvePorts([PortMapping(hostPort: 0, containerPort: 80), PortMapping(hostPort: 20000, containerPort: 81),
                                         PortMapping(hostPort: 0, containerPort: 82)], on: "p")
        #expect(first.map(\.hostPort) == [20001, 20000, 20002])
        ledger.reserve(.task("a"), Resources(memoryBytes: 1), ports: first.map(\.hostKey), on: "p")
        #expect(ledger.resolvePorts([PortMapping(hostPort: 0, containerPort: 80)], on: "p").map(\.hostPort) == [20003])
        ledger.release(.task("a"))
        #expect(ledger.node("p")?.usedPorts.isEmpty == true, "released with the task")
    }
}
