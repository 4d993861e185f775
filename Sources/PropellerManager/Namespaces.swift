import PropellerCore

/// A namespace: tasks, actors (with their executions and workers) and secrets belong to one.
/// `default` always exists; others are made by a cluster admin.
public struct NamespaceRecord: Codable, Sendable, Hashable {
    public var name: String
    public var createdAt: Double
    /// What it may hold at once (nil: no limit).
    public var quota: NamespaceQuota?

    public init(name: String, createdAt: Double, quota: NamespaceQuota? = nil) {
        self.name = name
        self.createdAt = createdAt
        self.quota = quota
    }
}

/// Where namespaces live.
public protocol NamespaceStore: Sendable {
    /// Adds one; false when the name is taken.
    func insertNamespace(_ namespace: NamespaceRecord) throws -> Bool
    func namespaces() throws -> [NamespaceRecord]
    /// Removes one; false when there was none.
    func deleteNamespace(_ name: String) throws -> Bool
    /// Replaces one's quota (`default` included: it is stored on its first quota).
    func setNamespaceQuota(_ name: String, _ quota: NamespaceQuota?, createdAt: Double) throws
}

/// The manager's namespaces, read from the store once and kept in memory (the access check
/// asks on every request).
public final class Namespaces: Sendable {
    /// The namespace of everything made without one, and of everything from before namespaces.
    public static let defaultName = "default"

    let store: any NamespaceStore
    private let known: Locked<[String: NamespaceRecord]>

    public init(store: any NamespaceStore) throws {
        self.store = store
        known = Locked(Dictionary(uniqueKeysWithValues: try store.namespaces().map { ($0.name, $0) }))
    }

    /// A namespace's name: a DNS label (1 to 63 lowercase letters, digits and '-', starting with
    /// a letter, not ending with '-'), as Kubernetes' and Nomad's are.
    public static func check(_ name: String) throws -> String {
        let scalars = name.unicodeScalars
        guard let first = scalars.first, let last = scalars.last, scalars.count <= 63, ("a"..."z").contains(first), last != "-",
              scalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
            throw PropellerError(.invalidArgument, "invalid namespace \"\(name)\": 1 to 63 lowercase letters, digits and '-', starting with a letter")
        }
        return name
    }

    public func exists(_ name: String) -> Bool { name == Self.defaultName || known.withLock { $0[name] != nil } }

    /// `default` first, then the others by name.
    public func list() -> [NamespaceRecord] {
        let all = known.withLock { $0 }
        return [all[Self.defaultName] ?? NamespaceRecord(name: Self.defaultName, createdAt: 0)]
            + all.values.filter { $0.name != Self.defaultName }.sorted { $0.name < $1.name }
    }

    public func get(_ name: String) -> NamespaceRecord? { list().first { $0.name == name } }

    /// The quotas that limit something, by namespace (what the scheduler is given).
    public func quotas() -> [String: NamespaceQuota] {
        Dictionary(uniqueKeysWithValues: list().compactMap { r in r.quota.flatMap { $0.isEmpty ? nil : (r.name, $0) } })
    }

    public func create(_ name: String, quota: NamespaceQuota? = nil) throws -> NamespaceRecord {
        let name = try Self.check(name)
        let record = NamespaceRecord(name: name, createdAt: WallClock.now(), quota: quota)
        guard name != Self.defaultName, try store.insertNamespace(record) else { throw APIError.conflict("namespace \(name) exists") }
        known.withLock { $0[name] = record }
        return record
    }

    /// Replaces a namespace's quota (nil: no limit).
    public func setQuota(_ name: String, _ quota: NamespaceQuota?) throws -> NamespaceRecord {
        guard var record = get(name) else { throw APIError.notFound("no namespace \(name)") }
        record.quota = quota.flatMap { $0.isEmpty ? nil : $0 }
        try store.setNamespaceQuota(name, record.quota, createdAt: record.createdAt)
        known.withLock { $0[name] = record }
        return record
    }

    /// Removes an empty namespace (the caller checks that it is).
    public func delete(_ name: String) throws {
        guard name != Self.defaultName else { throw APIError.conflict("namespace default cannot be deleted") }
        guard try store.deleteNamespace(name) else { throw APIError.notFound("no namespace \(name)") }
        known.withLock { $0[name] = nil }
    }
}

extension Optional where Wrapped == String {
    /// A stored namespace (nil before namespaces, or for `default`) as a name.
    var orDefaultNamespace: String { self ?? Namespaces.defaultName }
}
