import Foundation
import PropellerCore
import PropellerProvision

/// A NATS cluster's users file (the one `propeller provision --broker-kind nats` wrote, which
/// every node includes), changed in place and reloaded: each node named by a pid file gets
/// SIGHUP, as `nats-server --signal reload` sends. On reload NATS closes the connections of
/// users no longer in the file. The manager must be allowed to write the file and to signal the
/// servers (the same user, or root).
public struct NATSUsersFile: BrokerAuthority {
    public let path: String
    public let pidFiles: [String]
    let topics: Topics
    /// One change at a time: two adds at once must not both rewrite the file from the same text.
    private static let editing = Locked(())

    public init(path: String, pidFiles: [String], topics: Topics) {
        self.path = path
        self.pidFiles = pidFiles
        self.topics = topics
    }

    public var summary: String { "NATS users file \(path)" }

    public func admit(proplet id: String, password: String) async throws {
        try edit { try NATSUsers.adding(ACL.proplet(topics, id: id), password: password, to: NATSUsers.removing(user: id, from: $0)) }
    }

    public func revoke(proplet id: String) async throws {
        try edit { NATSUsers.removing(user: id, from: $0) }
    }

    /// Rewrites the file (a new file renamed over it, mode 600, so a node never reads half of
    /// it), then reloads every node.
    func edit(_ change: (String) throws -> String) throws {
        try Self.editing.withLock { _ in
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw PropellerError(.notFound, "NATS users file \(path): cannot read it")
            }
            let changed = try change(text)
            let temporary = path + ".propeller-new"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(changed.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw PropellerError(.systemCall, "NATS users file: cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
            guard rename(temporary, path) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temporary)
                throw PropellerError(.systemCall, "NATS users file: cannot replace \(path): \(reason)")
            }
        }
        try reload()
    }

    func reload() throws {
        var failures: [String] = []
        for file in pidFiles {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
                failures.append("\(file): no process id in it")
                continue
            }
            if kill(pid, SIGHUP) != 0 { failures.append("\(file): signal \(pid): \(String(cString: strerror(errno)))") }
        }
        if !failures.isEmpty {
            throw PropellerError(.unavailable, "NATS users file \(path) changed, but not every server reloaded it: \(failures.joined(separator: "; "))")
        }
    }
}
