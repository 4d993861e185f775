import PropellerCore

/// A proplet as the scheduler sees it: what it offers and what is reserved on it.
public struct PropletNode: Sendable, Hashable {
    public var id: String
    public var labels: [String: String]
    public var capacity: Capacity
    public var allocated: Resources
    public var taskCount: UInt64
    public var alive: Bool
    /// Closed to new work: shutting down (its heartbeats say `draining`), drained or made
    /// ineligible by an operator. What runs there goes on; nothing new goes there.
    public var closed = false
    /// The host volumes it offers: name → offered read-only.
    public var hostVolumes: [String: Bool] = [:]
    /// The CNI networks it offers (`bridge`, its operator's).
    public var networks: Set<String> = []
    /// Host ports its tasks publish (``PortMapping/hostKey``).
    public var usedPorts: Set<UInt32> = []
    /// The only namespaces whose work it takes (nil: every namespace).
    public var namespaces: Set<String>?

    public init(id: String, labels: [String: String], capacity: Capacity, allocated: Resources = .zero, taskCount: UInt64 = 0, alive: Bool = true) {
        self.id = id
        self.labels = labels
        self.capacity = capacity
        self.allocated = allocated
        self.taskCount = taskCount
        self.alive = alive
    }

    public var free: Resources { capacity.resources - allocated }
    public var freeSlots: UInt64 { capacity.tasks > taskCount ? capacity.tasks - taskCount : 0 }

    /// Whether the node could hold `request` if it ran nothing else.
    func couldEverHold(_ request: Resources) -> Bool { capacity.tasks > 0 && capacity.resources.holds(request) }
    func canHoldNow(_ request: Resources) -> Bool { alive && !closed && freeSlots > 0 && free.holds(request) }

    func matches(_ constraints: [String: String]) -> Bool {
        for (k, v) in constraints where labels[k] != v { return false }
        return true
    }

    /// Whether it can attach a task to `network` (none and host: every proplet).
    func offers(network: String) -> Bool { !NetworkName.isCNI(network) || networks.contains(network) }

    /// Whether each fixed host port of `ports` is free on it.
    func hasFree(_ ports: [PortMapping]) -> Bool { ports.allSatisfy { $0.hostPort == 0 || !usedPorts.contains($0.hostKey) } }

    /// Whether it offers each of `volumes` as a host volume, writable where the task writes.
    func offers(_ volumes: [VolumeMount]) -> Bool {
        volumes.allSatisfy { v in hostVolumes[v.name].map { readOnly in v.readOnly || !readOnly } ?? false }
    }
}

/// What to place: a task's request and where it may go.
public struct PlacementRequest: Sendable, Hashable {
    public var resources: Resources
    public var constraints: [String: String]
    public var pinnedProplet: String?
    /// The task's volumes: a name some known proplet offers as a host volume must be offered
    /// where it goes; any other name is a named volume, made wherever it runs.
    public var volumes: [VolumeMount]
    /// `none`, `host`, or a CNI network the proplet must offer.
    public var network: String
    /// Published ports: fixed host ports must be free where it goes.
    public var ports: [PortMapping]
    /// The task's (or actor's) namespace: a proplet reserved for others does not take it.
    public var namespace = "default"

    public init(resources: Resources, constraints: [String: String] = [:], pinnedProplet: String? = nil, volumes: [VolumeMount] = [],
                network: String = "none", ports: [PortMapping] = []) {
        self.resources = resources
        self.constraints = constraints
        self.pinnedProplet = pinnedProplet
        self.volumes = volumes
        self.network = network
        self.ports = ports
    }
}

/// The placement policies (ARCHITECTURE.md, "Scheduling").
public enum SchedulingPolicy: String, Sendable, CaseIterable, Codable {
    /// Fill the fullest node that fits (Nomad's BestFit): keeps whole nodes free for big tasks.
    case binpack
    /// The least allocated node that fits: spreads load and failure.
    case spread
    /// The next node that fits after the last one used (upstream Propeller's only policy).
    case roundRobin = "round-robin"
}

/// Decides where one task goes: feasibility (alive, pin, labels, free capacity and task slots)
/// first, then the policy's score. Pure and allocation-free on the hot path, so a pass over
/// thousands of pending tasks and nodes stays in milliseconds.
public struct Scheduler: Sendable {
    public enum Decision: Sendable, Hashable {
        /// Place on the node at this index.
        case place(Int)
        /// Nothing fits now; try again when capacity frees. The reason is stable text (no
        /// numbers that change), so storing it again is not needed on every pass.
        case wait(String)
        /// No known node could ever hold it.
        case never(String)
    }

    public var policy: SchedulingPolicy
    private var cursor = 0

    public init(policy: SchedulingPolicy) {
        self.policy = policy
    }

    public mutating func place(_ request: PlacementRequest, on nodes: [PropletNode]) -> Decision {
        var best = -1
        var bestScore = 0.0
        var anyEligible = false
        var anyCouldHold = false
        var anyAliveEligible = false
        var anyLackingVolumes = false
        var anyLackingNetwork = false
        var anyPortsTaken = false
        var anyReserved = false
        let hostVolumes = request.volumes.isEmpty ? [] : request.volumes.filter { v in nodes.contains { $0.hostVolumes[v.name] != nil } }
        let n = nodes.count
        let start = policy == .roundRobin && n > 0 ? cursor % n : 0
        for step in 0..<n {
            let i = policy == .roundRobin ? (start + step) % n : step
            let node = nodes[i]
            if let pin = request.pinnedProplet, node.id != pin { continue }
            if !request.constraints.isEmpty && !node.matches(request.constraints) { continue }
            if let only = node.namespaces, !only.contains(request.namespace) {
                anyReserved = true
                continue
            }
            if !hostVolumes.isEmpty && !node.offers(hostVolumes) {
                anyLackingVolumes = true
                continue
            }
            if !node.offers(network: request.network) {
                anyLackingNetwork = true
                continue
            }
            anyEligible = true
            guard node.couldEverHold(request.resources) else { continue }
            anyCouldHold = true
            if node.alive && !node.closed { anyAliveEligible = true }
            guard node.canHoldNow(request.resources) else { continue }
            guard request.ports.isEmpty || node.hasFree(request.ports) else {
                anyPortsTaken = true
                continue
            }
            switch policy {
            case .roundRobin:
                cursor = i + 1
                return .place(i)
            case .binpack, .spread:
                let score = Self.utilisation(after: request.resources, on: node)
                let better = best < 0 || (policy == .binpack ? score > bestScore : score < bestScore)
                if better {
                    best = i
                    bestScore = score
                }
            }
        }
        if best >= 0 { return .place(best) }
        if !anyEligible && anyLackingNetwork && !anyLackingVolumes {
            return .never(request.pinnedProplet.map { "proplet \($0) does not offer the network \(request.network)" }
                ?? "no proplet\(request.constraints.isEmpty ? "" : " matching \(Self.describe(request.constraints))") offers the network \(request.network)")
        }
        if !anyEligible && anyLackingVolumes {
            let what = hostVolumes.map { "\($0.name)\($0.readOnly ? "" : " (writable)")" }.joined(separator: ", ")
            let whose = request.pinnedProplet.map { "proplet \($0)" } ?? (request.constraints.isEmpty ? "no proplet" : "no proplet matching \(Self.describe(request.constraints))")
            return .never(request.pinnedProplet == nil ? "\(whose) offers the host volumes \(what)" : "\(whose) does not offer the host volumes \(what)")
        }
        if let pin = request.pinnedProplet, !anyEligible {
            return nodes.contains { $0.id == pin } ? .never("proplet \(pin) does not match the task's constraints") : .wait("waiting for proplet \(pin) to register")
        }
        if !anyEligible && anyReserved {
            return .wait("waiting for a proplet that takes namespace \(request.namespace)'s work (those that match are reserved for other namespaces)")
        }
        if !anyEligible {
            return nodes.isEmpty ? .wait("waiting for a proplet to register") : .never("no proplet matches the constraints \(Self.describe(request.constraints))")
        }
        if !anyCouldHold {
            return .never("no proplet could ever hold the task: it asks for \(Self.describe(request.resources)), more than any matching proplet has")
        }
        if !anyAliveEligible { return .wait("waiting for a matching proplet to come back (those known are away, draining or ineligible)") }
        if anyPortsTaken {
            let fixed = request.ports.filter { $0.hostPort != 0 }.map { "\($0.hostPort)/\($0.proto)" }.joined(separator: ", ")
            return .wait("waiting for host port \(fixed): in use on every matching proplet with room")
        }
        return .wait("waiting for capacity: every matching proplet is full")
    }

    /// Fraction of the node in use once `request` is placed, averaged over memory, cpu and slots.
    static func utilisation(after request: Resources, on node: PropletNode) -> Double {
        func frac(_ used: UInt64, _ total: UInt64) -> Double { total == 0 ? 0 : Double(used) / Double(total) }
        let c = node.capacity
        let mem = frac(node.allocated.memoryBytes &+ request.memoryBytes, c.memoryBytes)
        let cpu = frac(node.allocated.cpuMillis &+ request.cpuMillis, c.cpuMillis)
        let slots = frac(node.taskCount + 1, c.tasks)
        return (mem + cpu + slots) / 3
    }

    static func describe(_ r: Resources) -> String {
        var parts = ["memory \(ByteSize(bytes: r.memoryBytes))"]
        if r.cpuMillis > 0 { parts.append("\(Double(r.cpuMillis) / 1000) cpus") }
        if r.pids > 0 { parts.append("\(r.pids) pids") }
        return parts.joined(separator: ", ")
    }

    static func describe(_ labels: [String: String]) -> String {
        labels.keys.sorted().map { "\($0)=\(labels[$0] ?? "")" }.joined(separator: ",")
    }
}
