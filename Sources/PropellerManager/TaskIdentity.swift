import Foundation
import PropellerCore

/// A task's own API identity (the job of Abaco's client generator): an attempt of a task that
/// asks for it gets a token of the role it names, bound to its namespace, as a secret file
/// (`/run/secrets/propeller-api-token`), so that it can start tasks or message actors without a
/// long-lived credential in its image. The token is made when the start is sent, expires with
/// the attempt's timeout (a day at most) and is revoked when the attempt ends.
public enum TaskIdentity {
    /// What a task may ask for: never an admin or operator (the cluster's), and never more than
    /// its creator may do (checked when the task is made).
    public static let roles: [Role] = [.developer, .viewer, .invoker]
    /// The secret's name, and so its file: `/run/secrets/propeller-api-token`.
    public static let secretName = "propeller-api-token"
    /// Longest life of one (the task's timeout when shorter).
    public static let maxSeconds = 86400.0
}

extension TaskService {
    /// Gives the tokens that tasks' identities are made with (the API's).
    public func setTokens(_ tokens: APITokens?) { self.tokens = tokens }

    /// `start` with a fresh token for its attempt, when its task asks for one; the token's id is
    /// kept to be revoked when the attempt ends.
    func withIdentity(_ start: StartTask) -> StartTask {
        guard let t = state.active[start.taskId], let role = t.spec.apiTokenRole else { return start }
        let life = min(t.spec.timeoutSeconds.map { $0 + 60 } ?? TaskIdentity.maxSeconds, TaskIdentity.maxSeconds)
        guard let secret = identityToken(for: start.taskId, name: "task \(start.taskId) attempt \(start.attempt)", identity: "task:\(start.taskId)",
                                         role: role, namespace: t.spec.namespace.orDefaultNamespace, life: life) else { return start }
        var start = start
        start.secrets = (start.secrets ?? []) + [SecretMount(name: TaskIdentity.secretName)]
        start.secretValues = (start.secretValues ?? []) + [SecretValue(name: TaskIdentity.secretName, value: Data(secret.utf8))]
        return start
    }

    /// `run` with a fresh token for the execution, when its actor asks for one (revoked when
    /// the execution ends).
    func withIdentity(_ run: ExecutionCommand) -> ExecutionCommand {
        guard let worker = state.actors.workers[run.workerId], let actor = try? state.actor(worker.actorId), let role = actor.spec.apiTokenRole else { return run }
        let life = min(actor.spec.timeoutSeconds.map { $0 + 60 } ?? TaskIdentity.maxSeconds, TaskIdentity.maxSeconds)
        guard let secret = identityToken(for: run.executionId, name: "execution \(run.executionId) attempt \(run.attempt)", identity: "actor:\(actor.id)",
                                         role: role, namespace: actor.spec.namespace.orDefaultNamespace, life: life) else { return run }
        var run = run
        run.secrets = [SecretMount(name: TaskIdentity.secretName)]
        run.secretValues = [SecretValue(name: TaskIdentity.secretName, value: Data(secret.utf8))]
        return run
    }

    /// A new token for `key` (a task's or an execution's id), the one it had before revoked.
    private func identityToken(for key: String, name: String, identity: String, role: Role, namespace: String, life: Double) -> String? {
        guard let tokens else { return nil }
        do {
            if let old = identityTokens[key] { _ = try? tokens.revoke(id: old) }
            let (token, secret) = try tokens.create(name: name, identity: identity, role: role, namespace: namespace, expiresAt: WallClock.now() + life)
            identityTokens[key] = token.id
            return secret
        } catch {
            logger.error("no API token for the attempt", metadata: ["of": "\(key)", "error": "\(error)"])
            return nil
        }
    }

    /// Revokes the token of `taskID`'s attempt, when it had one (its attempt ended).
    func revokeIdentity(_ taskID: String) {
        guard let id = identityTokens.removeValue(forKey: taskID), let tokens else { return }
        do { _ = try tokens.revoke(id: id) } catch {
            logger.error("the task's API token was not revoked (it expires on its own)", metadata: ["task": "\(taskID)", "error": "\(error)"])
        }
    }
}
