import HTTPTypes

/// What a route asks of its caller.
public enum Access: Sendable, Hashable {
    /// No token: /health, the OpenAPI document, the web console's files.
    case open
    /// Any valid token (the handler decides the rest, e.g. rotating one's own token).
    case authenticated
    /// A token whose role has this permission.
    case permission(Permission)
}

/// The API's access table: every route with what it needs, in one place. The middleware looks
/// each request up here before any handler runs; a path that matches no rule is refused to every
/// role but admin (and then answered 404 by the router). A test walks the router's own routes and
/// fails for a route without a rule or a rule without a route, so no route can be added
/// unguarded.
public enum AccessRules {
    public struct Rule: Sendable {
        public var method: String
        /// Path segments; `{…}` matches one segment, `**` the rest.
        public var pattern: [Substring]
        public var access: Access
        /// Written to the audit log (every write is, but for exec's keystrokes and resizes).
        public var audited: Bool

        /// "POST /tasks/{id}/start".
        public var route: String { "\(method) /\(pattern.joined(separator: "/"))" }
    }

    private static func rule(_ route: String, _ access: Access, audited: Bool? = nil) -> Rule {
        let parts = route.split(separator: " ", maxSplits: 1)
        let method = String(parts[0])
        let path = parts.count > 1 ? parts[1] : "/"
        let writes = method != "GET" && method != "HEAD"
        return Rule(method: method, pattern: path.split(separator: "/"), access: access, audited: audited ?? writes)
    }

    /// The table. Secrets' GETs are audited: who looked at which secret is a question an audit
    /// answers even though no value is ever returned.
    public static let rules: [Rule] = [
        rule("GET /health", .open),
        rule("GET /openapi.json", .open),
        rule("GET /ui/**", .open),
        rule("GET /ui", .open),
        rule("GET /whoami", .authenticated),
        rule("GET /managers", .permission(.clusterRead)),
        rule("GET /metrics", .permission(.clusterRead)),

        rule("POST /tasks", .permission(.tasksWrite)),
        rule("GET /tasks", .permission(.tasksRead)),
        rule("GET /tasks/{id}", .permission(.tasksRead)),
        rule("PUT /tasks/{id}", .permission(.tasksWrite)),
        rule("DELETE /tasks/{id}", .permission(.tasksWrite)),
        rule("POST /tasks/{id}/start", .permission(.tasksWrite)),
        rule("POST /tasks/{id}/stop", .permission(.tasksWrite)),
        rule("GET /tasks/{id}/results", .permission(.tasksRead)),
        rule("GET /tasks/{id}/outputs", .permission(.tasksRead)),
        rule("GET /tasks/{id}/outputs/**", .permission(.tasksRead)),
        rule("GET /tasks/{id}/logs", .permission(.tasksRead)),
        rule("GET /tasks/{id}/watch", .permission(.tasksRead)),
        rule("GET /tasks/{id}/stats", .permission(.tasksRead)),
        rule("POST /tasks/{id}/exec", .permission(.tasksExec)),
        rule("GET /tasks/{id}/exec/{sid}", .permission(.tasksExec)),
        rule("DELETE /tasks/{id}/exec/{sid}", .permission(.tasksExec)),
        rule("GET /tasks/{id}/exec/{sid}/output", .permission(.tasksExec)),
        rule("POST /tasks/{id}/exec/{sid}/input", .permission(.tasksExec), audited: false),
        rule("POST /tasks/{id}/exec/{sid}/resize", .permission(.tasksExec), audited: false),
        rule("POST /tasks/{id}/exec/{sid}/signal", .permission(.tasksExec)),

        rule("GET /proplets", .permission(.propletsRead)),
        rule("GET /proplets/{id}", .permission(.propletsRead)),
        rule("GET /proplets/{id}/stats", .permission(.propletsRead)),
        rule("DELETE /proplets/{id}", .permission(.propletsManage)),
        rule("POST /proplets", .permission(.propletsAdmit)),
        rule("GET /proplet-identities", .permission(.propletsRead)),
        rule("POST /proplets/{id}/revoke", .permission(.propletsManage)),
        rule("PUT /proplets/{id}/eligibility", .permission(.propletsManage)),
        rule("POST /proplets/{id}/drain", .permission(.propletsManage)),
        rule("DELETE /proplets/{id}/drain", .permission(.propletsManage)),
        rule("GET /volumes", .permission(.volumesRead)),
        rule("DELETE /proplets/{id}/volumes/{name}", .permission(.volumesManage)),

        rule("POST /actors", .permission(.actorsWrite)),
        rule("GET /actors", .permission(.actorsRead)),
        rule("GET /actors/{id}", .permission(.actorsRead)),
        rule("PUT /actors/{id}", .permission(.actorsWrite)),
        rule("DELETE /actors/{id}", .permission(.actorsWrite)),
        rule("POST /actors/{id}/messages", .permission(.actorsMessage)),
        rule("GET /actors/{id}/messages", .permission(.actorsRead)),
        rule("DELETE /actors/{id}/messages", .permission(.actorsWrite)),
        rule("GET /actors/{id}/executions", .permission(.actorsRead)),
        rule("GET /actors/{id}/executions/{eid}", .permission(.actorsRead)),
        rule("DELETE /actors/{id}/executions/{eid}", .permission(.actorsWrite)),
        rule("GET /actors/{id}/executions/{eid}/logs", .permission(.actorsRead)),
        rule("GET /actors/{id}/executions/{eid}/results", .permission(.actorsRead)),
        rule("GET /actors/{id}/state", .permission(.actorsRead)),
        rule("POST /actors/{id}/state", .permission(.actorsWrite)),
        rule("GET /actors/{id}/workers", .permission(.actorsRead)),
        rule("POST /actors/{id}/workers", .permission(.actorsWrite)),
        rule("DELETE /actors/{id}/workers/{wid}", .permission(.actorsWrite)),
        rule("POST /actors/{id}/nonces", .permission(.actorsWrite)),
        rule("GET /actors/{id}/nonces", .permission(.actorsWrite)),
        rule("DELETE /actors/{id}/nonces/{nid}", .permission(.actorsWrite)),
        rule("GET /actors/{id}/permissions", .permission(.actorsRead)),
        rule("POST /actors/{id}/permissions", .permission(.actorsWrite)),
        rule("DELETE /actors/{id}/permissions/{identity}", .permission(.actorsWrite)),

        rule("GET /secrets", .permission(.secretsRead), audited: true),
        rule("GET /secrets/{name}", .permission(.secretsRead), audited: true),
        rule("POST /secrets", .permission(.secretsWrite)),
        rule("DELETE /secrets/{name}", .permission(.secretsWrite)),

        rule("GET /tokens", .permission(.tokensManage)),
        rule("POST /tokens", .permission(.tokensManage)),
        rule("DELETE /tokens/{id}", .permission(.tokensManage)),
        rule("DELETE /tokens", .permission(.tokensManage)),
        rule("POST /tokens/{id}/rotate", .authenticated),
        rule("GET /audit", .permission(.auditRead)),
        rule("GET /namespaces", .permission(.namespacesRead)),
        rule("POST /namespaces", .permission(.namespacesManage)),
        rule("GET /namespaces/{name}", .permission(.namespacesRead)),
        rule("PUT /namespaces/{name}", .permission(.namespacesManage)),
        rule("DELETE /namespaces/{name}", .permission(.namespacesManage)),
    ]

    private static let byMethod: [String: [Rule]] = Dictionary(grouping: rules, by: \.method)

    /// The rule for a request, or nil when none matches. Literal segments win over `{…}`, as in
    /// the router, so `/tasks/{id}` and a literal sibling cannot shadow each other.
    public static func rule(method: HTTPRequest.Method, path: String) -> Rule? {
        let method = method == .head ? "GET" : method.rawValue
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var best: (rule: Rule, literals: Int)?
        for rule in byMethod[method] ?? [] {
            guard let literals = match(rule.pattern, segments) else { continue }
            if let b = best, literals <= b.literals { continue }
            best = (rule, literals)
        }
        return best?.rule
    }

    /// The count of literal segments matched, or nil for no match.
    static func match(_ pattern: [Substring], _ segments: [Substring]) -> Int? {
        var literals = 0
        for (i, p) in pattern.enumerated() {
            if p == "**" { return i < segments.count ? literals : nil }
            guard i < segments.count else { return nil }
            if p.hasPrefix("{") { continue }
            guard p == segments[i] else { return nil }
            literals += 1
        }
        return pattern.count == segments.count ? literals : nil
    }
}

extension AccessRules {
    /// The role × permission table with each permission's routes, as SECURITY.md shows it (a
    /// test checks that SECURITY.md holds exactly this text).
    public static func markdownTable() -> String {
        let roles = Role.allCases
        var lines = ["| Permission | Routes | " + roles.map(\.rawValue).joined(separator: " | ") + " |",
                     "|---|---|" + roles.map { _ in ":-:" }.joined(separator: "|") + "|"]
        for permission in Permission.allCases {
            let routes = rules.filter { $0.access == .permission(permission) }.map { "`\($0.route)`" }.joined(separator: ", ")
            let marks = roles.map { $0.permissions.contains(permission) ? "✓" : "" }
            lines.append("| `\(permission.rawValue)` | \(routes) | " + marks.joined(separator: " | ") + " |")
        }
        let authenticated = rules.filter { $0.access == .authenticated }.map { "`\($0.route)`" }.joined(separator: ", ")
        lines.append("| any valid token | \(authenticated) | " + roles.map { _ in "✓" }.joined(separator: " | ") + " |")
        return lines.joined(separator: "\n") + "\n"
    }
}
