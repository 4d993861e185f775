import PropellerCore

/// One thing a token may be allowed to do: the API's routes each need one (``AccessRules``),
/// and a refusal names the one that was missing.
public enum Permission: String, Codable, Sendable, CaseIterable, Comparable {
    /// Manager status and metrics.
    case clusterRead = "cluster:read"
    /// Proplets: list, get, usage.
    case propletsRead = "proplets:read"
    /// Proplets: drain, eligibility, removal, revoking an identity.
    case propletsManage = "proplets:manage"
    /// Proplet identities on the broker: add one (`propeller proplet add`). A proplet is given
    /// the tasks placed on it, their secrets included, so only an admin lets one in.
    case propletsAdmit = "proplets:admit"
    /// Named volumes on proplets: list.
    case volumesRead = "volumes:read"
    /// Named volumes on proplets: delete.
    case volumesManage = "volumes:manage"
    /// Tasks: list, get, watch, usage, results, logs, outputs.
    case tasksRead = "tasks:read"
    /// Tasks: create, update, start, stop, delete.
    case tasksWrite = "tasks:write"
    /// A process run inside a running task (`task exec`).
    case tasksExec = "tasks:exec"
    /// Actors and their executions, logs, results, messages, state and workers.
    case actorsRead = "actors:read"
    /// Actors: register, update, delete, scale, state, cancel.
    case actorsWrite = "actors:write"
    /// Messages posted to an actor's inbox.
    case actorsMessage = "actors:message"
    /// Secrets' names and sizes (never a value: no route returns one).
    case secretsRead = "secrets:read"
    /// Secrets: create and delete.
    case secretsWrite = "secrets:write"
    /// API tokens: make, list, rotate any, revoke (a token bound to a namespace: that
    /// namespace's tokens alone).
    case tokensManage = "tokens:manage"
    /// The audit log.
    case auditRead = "audit:read"
    /// Namespaces: list and get with their usage (a namespaced token sees its own).
    case namespacesRead = "namespaces:read"
    /// Namespaces: create and delete.
    case namespacesManage = "namespaces:manage"

    /// Permissions over the cluster itself rather than what lives in a namespace: a token bound
    /// to one namespace never has them, whatever its role.
    public var isClusterWide: Bool {
        switch self {
        case .propletsManage, .propletsAdmit, .volumesManage, .auditRead, .namespacesManage: return true
        default: return false
        }
    }

    public static func < (a: Permission, b: Permission) -> Bool { a.rawValue < b.rawValue }
}

/// The built-in roles a token carries: what each may do is fixed here and documented in
/// SECURITY.md as a table (generated from this one by a test, so they cannot drift apart).
public enum Role: String, Codable, Sendable, CaseIterable {
    /// Everything, tokens and the audit log included.
    case admin
    /// The fleet: proplets, drain, eligibility, volumes, the cluster's status. No task, actor or
    /// secret, so no reading of others' results.
    case `operator`
    /// Work: tasks (exec included), actors, secrets; sees the fleet it runs on.
    case developer
    /// Reads everything a developer can see; changes nothing.
    case viewer
    /// Posts messages to actors; nothing else.
    case invoker

    /// What this role may do.
    public var permissions: Set<Permission> {
        switch self {
        case .admin:
            return Set(Permission.allCases)
        case .operator:
            return [.clusterRead, .propletsRead, .propletsManage, .volumesRead, .volumesManage, .namespacesRead]
        case .developer:
            return [.clusterRead, .propletsRead, .volumesRead, .tasksRead, .tasksWrite, .tasksExec,
                    .actorsRead, .actorsWrite, .actorsMessage, .secretsRead, .secretsWrite, .namespacesRead]
        case .viewer:
            return [.clusterRead, .propletsRead, .volumesRead, .tasksRead, .actorsRead, .secretsRead, .namespacesRead]
        case .invoker:
            return [.actorsMessage]
        }
    }

    /// "admin, operator, developer, viewer, invoker": for error messages and help.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Who makes a request: the token that authenticated it and what it carries.
public struct Principal: Sendable, Hashable {
    public var tokenID: String
    /// The user or service the token belongs to.
    public var identity: String
    public var role: Role
    /// The one namespace the role holds in; nil: all of them and the cluster.
    public var namespace: String?
    /// Set when the caller presented a nonce (`?x-nonce=`) instead of a token: it may do what
    /// the nonce's level allows on the nonce's actor, and nothing else.
    public var nonce: ActorNonce?

    public init(tokenID: String, identity: String, role: Role, namespace: String? = nil, nonce: ActorNonce? = nil) {
        self.tokenID = tokenID
        self.identity = identity
        self.role = role
        self.namespace = namespace
        self.nonce = nonce
    }

    /// The caller of a manager that runs without authentication (`--insecure-no-auth`).
    public static let anonymous = Principal(tokenID: "", identity: "anonymous", role: .admin)

    /// What the role allows, less the cluster-wide permissions for a token bound to a namespace.
    public var permissions: Set<Permission> {
        if let nonce { return Set(Permission.allCases.filter { ActorAccessLevel.needed(for: $0).map { $0 <= nonce.level } ?? false }) }
        return namespace == nil ? role.permissions : role.permissions.filter { !$0.isClusterWide }
    }

    public func may(_ permission: Permission) -> Bool { permissions.contains(permission) }

    /// "token tok-… (alice, role viewer in team-a)".
    var description: String {
        if let nonce { return "nonce \(nonce.id) (level \(nonce.level.rawValue) on actor \(nonce.actorId))" }
        return "token \(tokenID) (\(identity), role \(role.rawValue)\(namespace.map { " in namespace \($0)" } ?? ""))"
    }
}
