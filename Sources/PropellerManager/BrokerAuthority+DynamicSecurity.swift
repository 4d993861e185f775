import Foundation
import PropellerCore
import PropellerProvision

/// mosquitto's dynamic-security plugin (shipped with Debian's mosquitto), driven over the
/// manager's own MQTT connection: commands on `$CONTROL/dynamic-security/v1`, answers on
/// `…/response`. Each proplet gets a role holding exactly the grants of a provisioned proplet
/// (`ACL.proplet`) and a client with that role; deleting the client makes mosquitto close its
/// connection at once ("disconnected by administrative action"). The manager's broker user
/// needs write on the command topic and read on the response topic (`propeller provision
/// --broker-admin` grants them).
public final class MosquittoDynamicSecurity: BrokerAuthority {
    public static let commandTopic = "$CONTROL/dynamic-security/v1"
    public static let responseTopic = commandTopic + "/response"

    let topics: Topics
    let publish: @Sendable (String, [UInt8]) throws -> Void
    let timeout: Duration
    /// Commands sent and not answered, by correlation prefix.
    private let waiting = Locked<[String: CheckedContinuation<[Response], any Error>]>([:])

    struct Response: Decodable {
        var command: String
        var error: String?
        var correlationData: String?
    }

    /// `publish` sends on the manager's connection (QoS 1); answers come back through
    /// ``receive(_:)``, which the control bus calls for ``responseTopic``.
    public init(topics: Topics, timeout: Duration = .seconds(10), publish: @escaping @Sendable (String, [UInt8]) throws -> Void) {
        self.topics = topics
        self.timeout = timeout
        self.publish = publish
    }

    public var summary: String { "mosquitto's dynamic-security plugin" }

    static func role(_ id: String) -> String { "propeller-" + id }

    public func admit(proplet id: String, password: String) async throws {
        let grant = ACL.proplet(topics, id: id)
        let acls: [[String: Any]] = grant.write.map { ["acltype": "publishClientSend", "topic": $0, "allow": true] }
            + grant.read.map { ["acltype": "subscribePattern", "topic": $0, "allow": true] }
        let answers = try await run([
            ["command": "createRole", "rolename": Self.role(id), "textdescription": "Propeller proplet \(id)", "acls": acls],
            ["command": "createClient", "username": id, "password": password, "roles": [["rolename": Self.role(id)]]],
        ])
        if let failed = answers.first(where: { $0.error != nil }) {
            // Half made (the role without the client): taken away again.
            _ = try? await run([["command": "deleteClient", "username": id], ["command": "deleteRole", "rolename": Self.role(id)]])
            throw PropellerError(.unavailable, "mosquitto dynamic security: \(failed.command) for \(id): \(failed.error ?? "")")
        }
    }

    public func revoke(proplet id: String) async throws {
        let answers = try await run([["command": "deleteClient", "username": id], ["command": "deleteRole", "rolename": Self.role(id)]])
        let gone = ["Client not found", "Role not found"]
        if let failed = answers.first(where: { $0.error.map { !gone.contains($0) } ?? false }) {
            throw PropellerError(.unavailable, "mosquitto dynamic security: \(failed.command) for \(id): \(failed.error ?? "")")
        }
    }

    /// Sends `commands` in one message and waits for their answers.
    func run(_ commands: [[String: Any]]) async throws -> [Response] {
        let key = SecureRandom.bytes(8).hexString
        var tagged = commands
        for i in tagged.indices { tagged[i]["correlationData"] = "\(key)-\(i)" }
        let payload = [UInt8](try JSONSerialization.data(withJSONObject: ["commands": tagged]))
        let timeout = timeout
        return try await withCheckedThrowingContinuation { continuation in
            waiting.withLock { $0[key] = continuation }
            do {
                try publish(Self.commandTopic, payload)
            } catch {
                finish(key, .failure(error))
                return
            }
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                self?.finish(key, .failure(PropellerError(.unavailable, "mosquitto did not answer a dynamic-security command within \(timeout): is the plugin loaded (plugin …/mosquitto_dynamic_security.so) and may the manager's broker user write \(Self.commandTopic) and read \(Self.responseTopic)?")))
            }
        }
    }

    /// An answer from the broker (a payload on ``responseTopic``).
    public func receive(_ payload: [UInt8]) {
        struct Answers: Decodable { var responses: [Response] }
        guard let answers = try? JSONDecoder().decode(Answers.self, from: Data(payload)) else { return }
        var byKey: [String: [Response]] = [:]
        for r in answers.responses {
            guard let tag = r.correlationData, let dash = tag.lastIndex(of: "-") else { continue }
            byKey[String(tag[..<dash]), default: []].append(r)
        }
        for (key, responses) in byKey { finish(key, .success(responses)) }
    }

    private func finish(_ key: String, _ result: Result<[Response], any Error>) {
        guard let continuation = waiting.withLock({ $0.removeValue(forKey: key) }) else { return }
        continuation.resume(with: result)
    }
}
