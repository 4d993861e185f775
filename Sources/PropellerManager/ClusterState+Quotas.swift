import Foundation
import PropellerCore

/// What a namespace may hold at once (nil fields: no limit).
public struct NamespaceQuota: Codable, Sendable, Hashable {
    /// CPU reserved by its placed tasks and actor workers, in thousandths of a CPU.
    public var cpuMillis: UInt64?
    /// Memory reserved by its placed tasks and actor workers.
    public var memoryBytes: UInt64?
    /// Tasks placed at once (scheduled, running or unknown).
    public var runningTasks: Int?
    /// Actors registered.
    public var actors: Int?
    /// Actor workers placed at once (warm or busy), all its actors together.
    public var workers: Int?

    public init(cpuMillis: UInt64? = nil, memoryBytes: UInt64? = nil, runningTasks: Int? = nil, actors: Int? = nil, workers: Int? = nil) {
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.runningTasks = runningTasks
        self.actors = actors
        self.workers = workers
    }

    /// The JSON a store keeps (nil: none).
    public static func stored(_ quota: NamespaceQuota?) throws -> String? {
        try quota.map { String(decoding: try WireCoding.encoder().encode($0), as: UTF8.self) }
    }

    /// A quota from a store's JSON.
    public static func fromStore(_ text: String?) throws -> NamespaceQuota? {
        try text.map { try WireCoding.decoder().decode(NamespaceQuota.self, from: Data($0.utf8)) }
    }

    /// "memory 8 GiB, running tasks 10" (or "none").
    public var summary: String {
        var parts: [String] = []
        if let cpuMillis { parts.append("CPU \(Self.cpus(cpuMillis))") }
        if let memoryBytes { parts.append("memory \(ByteSize(bytes: memoryBytes))") }
        if let runningTasks { parts.append("running tasks \(runningTasks)") }
        if let actors { parts.append("actors \(actors)") }
        if let workers { parts.append("workers \(workers)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    public var isEmpty: Bool { cpuMillis == nil && memoryBytes == nil && runningTasks == nil && actors == nil && workers == nil }

    /// Why a task asking for `r` can never run in `namespace` under this quota, or nil.
    public func never(_ r: Resources, in namespace: String) -> String? {
        if let cpu = cpuMillis, r.cpuMillis > cpu {
            return "namespace \(namespace)'s CPU quota is \(Self.cpus(cpu)): a task asking for \(Self.cpus(r.cpuMillis)) can never run there"
        }
        if let memory = memoryBytes, r.memoryBytes > memory {
            return "namespace \(namespace)'s memory quota is \(ByteSize(bytes: memory)): a task asking for \(ByteSize(bytes: r.memoryBytes)) can never run there"
        }
        if let tasks = runningTasks, tasks == 0 { return "namespace \(namespace)'s quota allows no running task" }
        return nil
    }

    /// Why a task asking for `r` must wait while the namespace has `used` placed, or nil.
    func wait(_ r: Resources, used: NamespaceReservation, in namespace: String) -> String? {
        if let tasks = runningTasks, used.tasks + 1 > tasks {
            return "namespace \(namespace) is at its running-task quota: \(used.tasks) of \(tasks) placed"
        }
        return room(r, used: used, in: namespace)
    }

    /// Why an actor worker reserving `r` must wait while the namespace has `used` placed, or nil.
    func waitWorker(_ r: Resources, used: NamespaceReservation, in namespace: String) -> String? {
        if let workers, used.workers + 1 > workers {
            return "namespace \(namespace) is at its worker quota: \(used.workers) of \(workers) placed"
        }
        return room(r, used: used, in: namespace)
    }

    /// Why `r` more CPU or memory would go over the quota, or nil.
    private func room(_ r: Resources, used: NamespaceReservation, in namespace: String) -> String? {
        if let cpu = cpuMillis, used.resources.cpuMillis + r.cpuMillis > cpu {
            return "namespace \(namespace) is at its CPU quota: \(Self.cpus(used.resources.cpuMillis)) of \(Self.cpus(cpu)) in use"
        }
        if let memory = memoryBytes, used.resources.memoryBytes + r.memoryBytes > memory {
            return "namespace \(namespace) is at its memory quota: \(ByteSize(bytes: used.resources.memoryBytes)) of \(ByteSize(bytes: memory)) in use"
        }
        return nil
    }

    /// "1.5 CPU".
    public static func cpus(_ millis: UInt64) -> String {
        let whole = millis / 1000, rest = millis % 1000
        if rest == 0 { return "\(whole) CPU" }
        var fraction = String(rest)
        while fraction.count < 3 { fraction = "0" + fraction }
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(whole).\(fraction) CPU"
    }
}

/// What a namespace's placed tasks and actor workers reserve now.
struct NamespaceReservation: Sendable, Hashable {
    var tasks = 0
    var workers = 0
    var resources = Resources()

    mutating func add(_ r: Resources) {
        tasks += 1
        reserve(r)
    }

    mutating func addWorker(_ r: Resources) {
        workers += 1
        reserve(r)
    }

    private mutating func reserve(_ r: Resources) {
        resources.cpuMillis += r.cpuMillis
        resources.memoryBytes += r.memoryBytes
    }
}

extension ClusterState {
    /// New quotas (a namespace made, changed or removed): tasks that waited for room in their
    /// namespace may fit now.
    mutating func setQuotas(_ quotas: [String: NamespaceQuota]) {
        self.quotas = quotas.filter { !$0.value.isEmpty }
        for id in pendingQueue {
            // Their reason was the quota's: let the next pass say it again or place them.
            guard var t = active[id], t.reason?.hasPrefix("namespace ") == true else { continue }
            t.reason = nil
            active[id] = t
        }
        schedulePending()
    }

    /// Why `t` may not be placed now because of its namespace's quota, or nil.
    func quotaWait(_ t: TaskRecord, _ reserved: [String: NamespaceReservation]) -> String? {
        let namespace = t.spec.namespace.orDefaultNamespace
        guard let quota = quotas[namespace] else { return nil }
        if let never = quota.never(t.spec.resources, in: namespace) { return never }
        return quota.wait(t.spec.resources, used: reserved[namespace] ?? NamespaceReservation(), in: namespace)
    }

    /// What the placed tasks (those holding an allocation) of each namespace with a quota
    /// reserve: from the allocation table, so it cannot drift from it.
    func namespaceReservations() -> [String: NamespaceReservation] {
        var reserved: [String: NamespaceReservation] = [:]
        for t in active.values where t.state != .pending {
            let namespace = t.spec.namespace.orDefaultNamespace
            guard quotas[namespace] != nil, let a = ledger.allocation(of: .task(t.id)) else { continue }
            reserved[namespace, default: NamespaceReservation()].add(a.resources)
        }
        for w in actors.workers.values {
            guard let actor = actors.records[w.actorId], case let namespace = actor.spec.namespace.orDefaultNamespace, quotas[namespace] != nil,
                  let a = ledger.allocation(of: .worker(w.id)) else { continue }
            reserved[namespace, default: NamespaceReservation()].addWorker(a.resources)
        }
        return reserved
    }

    /// Why a worker of actor `a` may not be placed now because of its namespace's quota, or nil.
    func quotaWait(worker a: ActorRecord) -> String? {
        let namespace = a.spec.namespace.orDefaultNamespace
        guard let quota = quotas[namespace] else { return nil }
        return quota.waitWorker(a.spec.resources, used: namespaceReservations()[namespace] ?? NamespaceReservation(), in: namespace)
    }
}
