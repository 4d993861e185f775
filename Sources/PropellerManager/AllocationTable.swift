import PropellerCore

/// The reservation ledger: every allocation (a task attempt or an actor worker) with the proplet
/// and the resources it holds, and the scheduler's view of each proplet (capacity, what is
/// allocated, how many allocations). One place does the arithmetic: an allocation is released
/// with exactly what it reserved, so a proplet's `allocated` is always the sum of its
/// allocations (`AllocationTableTests` checks it over random sequences).
public struct AllocationTable: Sendable {
    /// Who holds an allocation.
    public enum Holder: Hashable, Sendable {
        case task(String)
        case worker(String)
    }

    public struct Allocation: Hashable, Sendable {
        public var proplet: String
        public var resources: Resources
        /// Host ports it publishes (``PortMapping/hostKey``).
        public var ports: [UInt32] = []
    }

    /// Where host ports picked for a task (`--publish :PORT`) come from: below Linux's
    /// ephemeral range (32768 and up), so that they do not collide with outgoing connections.
    public static let pickedPorts: ClosedRange<UInt16> = 20000...32767

    /// The proplets in registration order (the scheduler's input).
    public private(set) var nodes: [PropletNode] = []
    private var index: [String: Int] = [:]
    private var allocations: [Holder: Allocation] = [:]
    private var byProplet: [String: Set<Holder>] = [:]

    public init() {}

    public func node(_ id: String) -> PropletNode? { index[id].map { nodes[$0] } }
    public func contains(_ proplet: String) -> Bool { index[proplet] != nil }

    /// Adds a proplet, or updates its labels, capacity, liveness and host volumes (its
    /// allocations stay).
    public mutating func upsert(_ id: String, labels: [String: String], capacity: Capacity, alive: Bool, hostVolumes: [HostVolume] = [],
                                networks: [String] = [], namespaces: [String]? = nil) {
        let offered = Dictionary(hostVolumes.map { ($0.name, $0.readOnly) }, uniquingKeysWith: { a, b in a && b })
        if let i = index[id] {
            nodes[i].labels = labels
            nodes[i].capacity = capacity
            nodes[i].alive = alive
            nodes[i].hostVolumes = offered
            nodes[i].networks = Set(networks)
            nodes[i].namespaces = namespaces.map(Set.init)
        } else {
            index[id] = nodes.count
            var node = PropletNode(id: id, labels: labels, capacity: capacity, alive: alive)
            node.hostVolumes = offered
            node.networks = Set(networks)
            node.namespaces = namespaces.map(Set.init)
            nodes.append(node)
        }
    }

    /// `mappings` with a free host port picked for each that asks for any (host port 0):
    /// free on `proplet`, and not one picked for another mapping of the same task.
    public func resolvePorts(_ mappings: [PortMapping], on proplet: String) -> [PortMapping] {
        var used = index[proplet].map { nodes[$0].usedPorts } ?? []
        for m in mappings where m.hostPort != 0 { used.insert(m.hostKey) }
        var next = Self.pickedPorts.lowerBound
        return mappings.map { m in
            guard m.hostPort == 0 else { return m }
            var picked = m
            while next < Self.pickedPorts.upperBound {
                picked.hostPort = next
                next += 1
                if used.insert(picked.hostKey).inserted { return picked }
            }
            return m  // the range is full: the proplet refuses the start, naming the port
        }
    }

    public mutating func setAlive(_ id: String, _ alive: Bool) {
        if let i = index[id] { nodes[i].alive = alive }
    }

    public mutating func setClosed(_ id: String, _ closed: Bool) {
        if let i = index[id] { nodes[i].closed = closed }
    }

    /// Forgets a proplet and every allocation on it.
    public mutating func remove(_ id: String) {
        for holder in byProplet.removeValue(forKey: id) ?? [] { allocations[holder] = nil }
        nodes.removeAll { $0.id == id }
        index = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { ($1.id, $0) })
    }

    /// Reserves `resources` on `proplet` for `holder`. False when the proplet is unknown or the
    /// holder already has an allocation (on any proplet: release it first).
    @discardableResult
    public mutating func reserve(_ holder: Holder, _ resources: Resources, ports: [UInt32] = [], on proplet: String) -> Bool {
        guard let i = index[proplet], allocations[holder] == nil else { return false }
        allocations[holder] = Allocation(proplet: proplet, resources: resources, ports: ports)
        byProplet[proplet, default: []].insert(holder)
        nodes[i].allocated = nodes[i].allocated + resources
        nodes[i].taskCount += 1
        nodes[i].usedPorts.formUnion(ports)
        return true
    }

    /// Gives back what `holder` reserved; returns it (nil when it held nothing).
    @discardableResult
    public mutating func release(_ holder: Holder) -> Allocation? {
        guard let a = allocations.removeValue(forKey: holder) else { return nil }
        byProplet[a.proplet]?.remove(holder)
        if let i = index[a.proplet] {
            nodes[i].allocated = nodes[i].allocated - a.resources
            nodes[i].taskCount -= 1
            nodes[i].usedPorts.subtract(a.ports)
        }
        return a
    }

    public func allocation(of holder: Holder) -> Allocation? { allocations[holder] }

    /// The holders of allocations on `proplet`.
    public func holders(on proplet: String) -> Set<Holder> { byProplet[proplet] ?? [] }

    /// The tasks with an allocation on `proplet`.
    public func tasks(on proplet: String) -> [String] {
        holders(on: proplet).compactMap { if case .task(let id) = $0 { id } else { nil } }.sorted()
    }

    /// The most free of any alive proplet with a free slot, per dimension: a request above it
    /// cannot fit anywhere now.
    public func maxFree() -> (resources: Resources, slots: UInt64) {
        var best = Resources.zero
        var slots: UInt64 = 0
        for n in nodes where n.alive && !n.closed && n.freeSlots > 0 {
            let f = n.free
            best = Resources(cpuMillis: max(best.cpuMillis, f.cpuMillis), memoryBytes: max(best.memoryBytes, f.memoryBytes), pids: max(best.pids, f.pids))
            slots = max(slots, n.freeSlots)
        }
        return (best, slots)
    }
}
