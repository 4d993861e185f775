import PropellerCore
import PropellerManager
import PropellerTestSupport
import Testing

@Suite struct AllocationTableTests {
    /// Over random reserves, releases, proplet updates and removals, every proplet's
    /// `allocated` and `taskCount` equal the sum and count of the allocations on it, as a plain
    /// list of (holder, proplet, resources) computes them.
    @Test func theLedgerAgreesWithItsAllocationsOverRandomSequences() {
        var rng = SplitMix(seed: 42)
        let proplets = ["a", "b", "c", "d"]
        for _ in 0..<200 {
            var table = AllocationTable()
            var model: [AllocationTable.Holder: (String, Resources)] = [:]
            var known = Set<String>()
            for _ in 0..<300 {
                let p = proplets[Int(rng.next() % 4)]
                let holder: AllocationTable.Holder = rng.next() % 2 == 0 ? .task("t\(rng.next() % 20)") : .worker("w\(rng.next() % 10)")
                switch rng.next() % 10 {
                case 0...1:
                    table.upsert(p, labels: [:], capacity: Capacity(cpuMillis: 1_000_000, memoryBytes: 1 << 40, pids: 1 << 20, tasks: 1000), alive: rng.next() % 3 != 0)
                    known.insert(p)
                case 2:
                    table.remove(p)
                    known.remove(p)
                    model = model.filter { $0.value.0 != p }
                case 3...6:
                    let r = Resources(cpuMillis: rng.next() % 1000, memoryBytes: rng.next() % (1 << 30), pids: rng.next() % 100)
                    let ok = table.reserve(holder, r, on: p)
                    #expect(ok == (known.contains(p) && model[holder] == nil))
                    if ok { model[holder] = (p, r) }
                default:
                    let released = table.release(holder)
                    #expect(released?.proplet == model[holder]?.0 && released?.resources == model[holder]?.1)
                    model[holder] = nil
                }
                for node in table.nodes {
                    let mine = model.values.filter { $0.0 == node.id }
                    #expect(node.allocated == mine.reduce(Resources.zero) { $0 + $1.1 })
                    #expect(node.taskCount == UInt64(mine.count))
                }
                #expect(Set(table.nodes.map(\.id)) == known)
            }
        }
    }

    @Test func aHolderHasOneAllocationAndTasksAreListedByProplet() {
        var table = AllocationTable()
        table.upsert("p", labels: [:], capacity: Capacity(cpuMillis: 1000, memoryBytes: 1 << 30, pids: 100, tasks: 4), alive: true)
        let first = table.reserve(.task("t1"), Resources(memoryBytes: 1 << 20), on: "p")
        let twice = table.reserve(.task("t1"), Resources(memoryBytes: 1 << 20), on: "p")
        let unknown = table.reserve(.task("t2"), Resources(memoryBytes: 1 << 20), on: "unknown")
        let worker = table.reserve(.worker("w1"), Resources(memoryBytes: 2 << 20), on: "p")
        #expect(first && !twice && !unknown && worker, "a holder holds once, on a known proplet")
        #expect(table.tasks(on: "p") == ["t1"])
        #expect(table.node("p")?.allocated.memoryBytes == 3 << 20 && table.node("p")?.freeSlots == 2)
        let released = table.release(.worker("w1"))
        let again = table.release(.worker("w1"))
        #expect(released?.resources.memoryBytes == 2 << 20 && again == nil)
    }
}
