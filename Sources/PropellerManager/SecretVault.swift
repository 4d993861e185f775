import Foundation
import PropellerCore

/// The manager's secrets: values sealed with the manager's key (``SecretBox``) into the store,
/// opened only to go to the proplet that runs a task asking for them.
public struct SecretVault: Sendable {
    /// The largest value (Docker's limit is 500 KB, Kubernetes' 1 MiB: files, not data sets).
    public static let maxBytes = 64 << 10

    let store: any SecretStore
    let box: SecretBox

    public init(store: any SecretStore, box: SecretBox) {
        self.store = store
        self.box = box
    }

    /// The store's key of a secret: its name in `default` (as before namespaces), else
    /// `NAMESPACE/NAME` (a name holds no '/', so keys cannot collide). Values are sealed with
    /// the key as associated data: a sealed value moved to another namespace does not open.
    static func key(_ name: String, in namespace: String) -> String {
        namespace == Namespaces.defaultName ? name : namespace + "/" + name
    }

    /// A stored key as (namespace, name).
    static func split(_ key: String) -> (namespace: String, name: String) {
        guard let slash = key.firstIndex(of: "/") else { return (Namespaces.defaultName, key) }
        return (String(key[..<slash]), String(key[key.index(after: slash)...]))
    }

    /// Stores a new secret; an error when the name is taken, invalid, or the value too large.
    public func create(name: String, value: [UInt8], in namespace: String = Namespaces.defaultName, at time: Double) throws -> SecretInfo {
        let name = try VolumeName.check(name, what: "secret")
        guard !value.isEmpty, value.count <= Self.maxBytes else {
            throw PropellerError(.invalidArgument, "secret \(name): the value must be 1 byte to \(ByteSize(bytes: UInt64(Self.maxBytes))), not \(value.count) bytes")
        }
        let key = Self.key(name, in: namespace)
        guard try store.insertSecret(SecretInfo(name: key, sizeBytes: value.count, createdAt: time), sealed: try box.seal(value, name: key)) else {
            throw PropellerError(.resourceExhausted, "secret \(name) exists: remove it first to give it a new value")
        }
        return SecretInfo(name: name, sizeBytes: value.count, createdAt: time, namespace: namespace)
    }

    /// The secrets of one namespace (nil: of all).
    public func list(in namespace: String? = Namespaces.defaultName) throws -> [SecretInfo] {
        try store.secrets().compactMap { stored in
            let (ns, name) = Self.split(stored.name)
            guard namespace == nil || namespace == ns else { return nil }
            return SecretInfo(name: name, sizeBytes: stored.sizeBytes, createdAt: stored.createdAt, namespace: ns)
        }
    }

    public func exists(_ name: String, in namespace: String = Namespaces.defaultName) throws -> Bool {
        try store.sealedSecret(Self.key(name, in: namespace)) != nil
    }

    public func delete(_ name: String, in namespace: String = Namespaces.defaultName) throws -> Bool {
        try store.deleteSecret(Self.key(name, in: namespace))
    }

    /// The values of the secrets a start asks for, from its namespace; those that are gone or do
    /// not open are left out (the proplet fails the attempt, naming them) and logged by the caller.
    func values(_ mounts: [SecretMount], in namespace: String) -> (values: [SecretValue], problems: [String]) {
        var values: [SecretValue] = []
        var problems: [String] = []
        for name in Set(mounts.map(\.name)).sorted() {
            let key = Self.key(name, in: namespace)
            do {
                guard let sealed = try store.sealedSecret(key) else {
                    problems.append("secret \(name) is not in the store (namespace \(namespace))")
                    continue
                }
                values.append(SecretValue(name: name, value: Data(try box.open(sealed, name: key))))
            } catch {
                problems.append("\(error)")
            }
        }
        return (values, problems)
    }
}
