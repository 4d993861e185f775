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

    /// Stores a new secret; an error when the name is taken, invalid, or the value too large.
    public func create(name: String, value: [UInt8], at time: Double) throws -> SecretInfo {
        let name = try VolumeName.check(name, what: "secret")
        guard !value.isEmpty, value.count <= Self.maxBytes else {
            throw PropellerError(.invalidArgument, "secret \(name): the value must be 1 byte to \(ByteSize(bytes: UInt64(Self.maxBytes))), not \(value.count) bytes")
        }
        let info = SecretInfo(name: name, sizeBytes: value.count, createdAt: time)
        guard try store.insertSecret(info, sealed: try box.seal(value, name: name)) else {
            throw PropellerError(.resourceExhausted, "secret \(name) exists: remove it first to give it a new value")
        }
        return info
    }

    public func list() throws -> [SecretInfo] { try store.secrets() }

    public func exists(_ name: String) throws -> Bool { try store.sealedSecret(name) != nil }

    public func delete(_ name: String) throws -> Bool { try store.deleteSecret(name) }

    /// The values of the secrets a start asks for; those that are gone or do not open are left
    /// out (the proplet fails the attempt, naming them) and logged by the caller.
    func values(_ mounts: [SecretMount]) -> (values: [SecretValue], problems: [String]) {
        var values: [SecretValue] = []
        var problems: [String] = []
        for name in Set(mounts.map(\.name)).sorted() {
            do {
                guard let sealed = try store.sealedSecret(name) else {
                    problems.append("secret \(name) is not in the store")
                    continue
                }
                values.append(SecretValue(name: name, value: Data(try box.open(sealed, name: name))))
            } catch {
                problems.append("\(error)")
            }
        }
        return (values, problems)
    }
}
