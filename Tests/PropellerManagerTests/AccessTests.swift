import Foundation
import GRDB
import HummingbirdTesting
import Hummingbird
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

/// Roles, the access table, expiry, rotation and the audit log, through the API on a real
/// SQLite store.
@Suite("API access: roles, tokens, audit")
struct AccessTests: Sendable {
    static let admin = "admin-secret-token"
    let dir: ScopedTempDirectory
    let store: SQLiteStore
    let service: TaskService
    let actors: ActorService
    let secrets: SecretVault
    let tokens: APITokens
    let audit: AuditLog
    let namespaces: Namespaces

    init() throws {
        dir = try ScopedTempDirectory("propeller-access")
        store = try SQLiteStore(path: dir.path + "/manager.db")
        secrets = SecretVault(store: store, box: try SecretBox(key: SecureRandom.bytes(32)))
        service = TaskService(store: store, bus: RecordingBus(), secrets: secrets)
        actors = ActorService(tasks: service)
        tokens = try APITokens(store: store, configured: [("root", "sha256:" + APITokens.hash(Self.admin))])
        audit = AuditLog(store: store)
        namespaces = try Namespaces(store: store)
    }

    func api() -> ManagerAPI {
        var api = ManagerAPI(service: service, actors: actors, tokens: tokens)
        api.secrets = secrets
        api.audit = audit
        api.namespaces = namespaces
        api.nonces = ActorNonces(store: store)
        api.grants = store
        return api
    }

    func withApp(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await Application(router: api().router()).test(.router) { client in try await body(client) }
    }

    static func headers(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)", .contentType: "application/json"] }

    static func message(_ response: TestResponse) -> String {
        (try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])?["error"] as? String ?? ""
    }

    /// A concrete path for a route's pattern: `{…}` → an id that exists nowhere, `**` → a file.
    static func sample(_ path: String) -> String {
        path.split(separator: "/").map { $0 == "**" ? "a/file" : $0.hasPrefix("{") ? "no-such-\($0.dropFirst().dropLast())" : String($0) }
            .reduce("") { $0 + "/" + $1 }
    }

    @Test func everyRouteHasARuleAndEveryRuleARoute() throws {
        let routes = api().router().routes.map { (method: $0.method, path: Self.sample($0.path.description)) }
        #expect(routes.count > 50)
        for route in routes {
            #expect(AccessRules.rule(method: route.method, path: route.path) != nil, "\(route.method) \(route.path) has no access rule")
        }
        for rule in AccessRules.rules {
            let matched = routes.contains { AccessRules.rule(method: $0.method, path: $0.path)?.route == rule.route }
            #expect(matched, "the rule \(rule.route) matches no route")
        }
        // Only these are open to callers without a token.
        let open = Set(AccessRules.rules.filter { $0.access == .open }.map(\.route))
        #expect(open == ["GET /health", "GET /openapi.json", "GET /ui", "GET /ui/**"])
        // A literal segment wins over a parameter, as in the router.
        #expect(AccessRules.rule(method: .post, path: "/tasks/abc/exec")?.route == "POST /tasks/{id}/exec")
        #expect(AccessRules.rule(method: .get, path: "/tasks/abc/outputs/a/b/c")?.route == "GET /tasks/{id}/outputs/**")
        #expect(AccessRules.rule(method: .get, path: "/tasks/abc/nothing") == nil)
    }

    /// The matrix: every route against a token of every role. Allowed: the handler answers
    /// (anything but 401/403). Refused: 403 naming the missing permission, before any handler.
    @Test func eachRoleGetsExactlyItsRoutes() async throws {
        var made: [Role: String] = [:]
        for role in Role.allCases { made[role] = try tokens.create(name: "matrix-\(role.rawValue)", role: role).secret }
        let secretsByRole = made
        let routes = api().router().routes.map { (method: $0.method, path: Self.sample($0.path.description)) }
        let checked = Locked(0)
        try await withApp { client in
            for route in routes {
                guard let rule = AccessRules.rule(method: route.method, path: route.path) else { continue }
                for role in Role.allCases {
                    let secret = try #require(secretsByRole[role])
                    let body: ByteBuffer? = route.method == .get || route.method == .delete ? nil : ByteBuffer(string: "{}")
                    try await client.execute(uri: route.path, method: route.method, headers: Self.headers(secret), body: body) { response in
                        let message = Self.message(response)
                        switch rule.access {
                        case .open:
                            #expect(response.status != .unauthorized && response.status != .forbidden, "\(rule.route) as \(role)")
                        case .authenticated:
                            // Rotation: one's own token or tokens:manage (the handler decides).
                            #expect(response.status != .unauthorized, "\(rule.route) as \(role): \(message)")
                            if rule.route.hasSuffix("/rotate") && !role.permissions.contains(.tokensManage) {
                                #expect(response.status == .forbidden && message.contains("tokens:manage"), "\(rule.route) as \(role): \(message)")
                            } else {
                                #expect(response.status != .forbidden, "\(rule.route) as \(role): \(message)")
                            }
                        case .permission(let p):
                            if role.permissions.contains(p) {
                                #expect(response.status != .forbidden && response.status != .unauthorized, "\(rule.route) as \(role): \(message)")
                                #expect(response.status.code < 500, "\(rule.route) as \(role): \(response.status) \(message)")
                            } else {
                                #expect(response.status == .forbidden, "\(rule.route) as \(role) answered \(response.status)")
                                #expect(message.contains("lacks permission \(p.rawValue)") && message.contains("role \(role.rawValue)"), "\(message)")
                            }
                        }
                    }
                    checked.withLock { $0 += 1 }
                }
            }
        }
        #expect(checked.withLock { $0 } == routes.count * Role.allCases.count)
        // Spot checks of the table itself, as SECURITY.md states it.
        #expect(!Role.operator.permissions.contains(.tasksRead) && !Role.operator.permissions.contains(.secretsRead))
        #expect(Role.invoker.permissions == [.actorsMessage])
        #expect(Role.viewer.permissions.allSatisfy { $0.rawValue.hasSuffix(":read") })
    }

    @Test func securityMarkdownHasTheRoleTable() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("SECURITY.md"), encoding: .utf8)
        let table = AccessRules.markdownTable()
        #expect(text.contains(table), "SECURITY.md must hold the role table as generated:\n\(table)")
    }

    @Test func tokensCarryRolesExpireAndRotate() async throws {
        let (viewer, viewerSecret) = try tokens.create(name: "dash", identity: "grafana", role: .viewer)
        try await withApp { client in
            // Made with a role (required) and an expiry.
            var made: [String: Any] = [:]
            try await client.execute(uri: "/tokens", method: .post, headers: Self.headers(Self.admin),
                                     body: ByteBuffer(string: #"{"name":"ci","role":"developer","identity":"ci-bot","expires_in_seconds":3600}"#)) { response in
                #expect(response.status == .created)
                made = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
            }
            #expect(made["role"] as? String == "developer" && made["identity"] as? String == "ci-bot")
            let expiring = try #require(made["token"] as? String)
            try await client.execute(uri: "/whoami", method: .get, headers: Self.headers(expiring)) { response in
                #expect(response.status == .ok)
                let me = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                #expect(me["identity"] as? String == "ci-bot" && me["role"] as? String == "developer")
                #expect((me["permissions"] as? [String])?.contains("tasks:exec") == true)
            }
            for (body, text) in [(#"{"name":"x"}"#, "role: required"), (#"{"name":"x","role":"root"}"#, "unknown role \"root\""),
                                 (#"{"name":"x","role":"viewer","expires_in_seconds":0}"#, "expires_in_seconds"),
                                 (#"{"name":"x","role":"viewer","scopes":["*"]}"#, "unknown field")] {
                try await client.execute(uri: "/tokens", method: .post, headers: Self.headers(Self.admin), body: ByteBuffer(string: body)) { response in
                    #expect(response.status.code == 422 || response.status.code == 400, "\(body)")
                    #expect(Self.message(response).contains(text), "\(body): \(Self.message(response))")
                }
            }
            // A token only an admin may make: a developer is refused.
            try await client.execute(uri: "/tokens", method: .post, headers: Self.headers(expiring),
                                     body: ByteBuffer(string: #"{"name":"y","role":"admin"}"#)) { response in
                #expect(response.status == .forbidden && Self.message(response).contains("tokens:manage"))
            }

            // Rotation: the viewer rotates itself; the old secret stops, the new one works.
            var rotated = ""
            try await client.execute(uri: "/tokens/\(viewer.id)/rotate", method: .post, headers: Self.headers(viewerSecret)) { response in
                #expect(response.status == .ok, "\(Self.message(response))")
                rotated = (try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])?["token"] as? String ?? ""
            }
            #expect(rotated.hasPrefix("ptk_") && rotated != viewerSecret)
            try await client.execute(uri: "/tasks", method: .get, headers: Self.headers(viewerSecret)) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/tasks", method: .get, headers: Self.headers(rotated)) { #expect($0.status == .ok) }
            // It may not rotate another's; configured tokens are rotated in the configuration.
            let developerID = try #require(made["id"] as? String)
            try await client.execute(uri: "/tokens/\(developerID)/rotate", method: .post, headers: Self.headers(rotated)) { response in
                #expect(response.status == .forbidden && Self.message(response).contains("may rotate only itself"))
            }
            let configured = "cfg-" + APITokens.hash(Self.admin).prefix(12)
            try await client.execute(uri: "/tokens/\(configured)/rotate", method: .post, headers: Self.headers(Self.admin)) { response in
                #expect(response.status == .conflict && Self.message(response).contains("configuration"))
            }

            // Expiry: refused with the time it ended.
            let stale = try tokens.create(name: "stale", role: .viewer, expiresAt: WallClock.now() - 1).secret
            try await client.execute(uri: "/whoami", method: .get, headers: Self.headers(stale)) { response in
                #expect(response.status == .unauthorized && Self.message(response).contains("token expired at 20"), "\(Self.message(response))")
            }
        }
        // After a restart (a new APITokens on the same store): roles, the rotation and the
        // expiry hold.
        let again = try APITokens(store: store, configured: [("root", "sha256:" + APITokens.hash(Self.admin))])
        if case .success(let t) = again.authenticate(Self.admin) { #expect(t.role == .admin) } else { Issue.record("the configured token is an admin") }
        #expect(again.authenticate(viewerSecret) == .failure(.unknown))
        let listed = try again.list()
        #expect(listed.first { $0.id == viewer.id }?.rotatedAt != nil)
        let ci = try #require(listed.first { $0.name == "ci" })
        #expect(ci.expiresAt.map { $0 > ci.createdAt + 3599 && $0 <= ci.createdAt + 3601 } == true)
        // Expiry is decided at the moment of the request.
        let (early, earlySecret) = try again.create(name: "later", role: .viewer, expiresAt: WallClock.now() + 60)
        #expect(again.authenticate(earlySecret) == .success(early))
        #expect(again.authenticate(earlySecret, now: WallClock.now() + 61) == .failure(.expired(at: try #require(early.expiresAt))))
    }

    @Test func theAuditLogRecordsWritesRefusalsAndSecretReadsWithWhoAndWhere() async throws {
        let (_, viewer) = try tokens.create(name: "dash", identity: "grafana", role: .viewer)
        let (_, developer) = try tokens.create(name: "laptop", identity: "alice", role: .developer)
        try await withApp { client in
            try await client.execute(uri: "/tasks", method: .post, headers: Self.headers(developer),
                                     body: ByteBuffer(string: #"{"name":"t","image":"registry.example/app:v1"}"#)) { #expect($0.status == .created) }
            try await client.execute(uri: "/tasks", method: .get, headers: Self.headers(developer)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/tasks", method: .post, headers: Self.headers(viewer),
                                     body: ByteBuffer(string: #"{"name":"t2","image":"registry.example/app:v1"}"#)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/secrets", method: .get, headers: Self.headers(viewer)) { #expect($0.status != .forbidden) }
            try await client.execute(uri: "/tasks/no-such/exec/s/input", method: .post, headers: Self.headers(developer),
                                     body: ByteBuffer(string: "{}")) { #expect($0.status != .forbidden) }
            try await client.execute(uri: "/audit", method: .get, headers: Self.headers(developer)) { response in
                #expect(response.status == .forbidden && Self.message(response).contains("audit:read"))
            }
            try await client.execute(uri: "/audit?limit=50", method: .get, headers: Self.headers(Self.admin)) { response in
                #expect(response.status == .ok)
                let page = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
                let entries = try #require(page["entries"] as? [[String: Any]])
                let lines = entries.map { "\($0["identity"] ?? "") \($0["role"] ?? "") \($0["method"] ?? "") \($0["path"] ?? "") \($0["status"] ?? "")" }
                #expect(lines == [
                    "alice developer POST /tasks 201",
                    "grafana viewer POST /tasks 403",
                    "grafana viewer GET /secrets 200",
                    "alice developer GET /audit 403",
                ], "\(lines)")
                #expect(entries.allSatisfy { ($0["at"] as? Double ?? 0) > 1.7e9 && ($0["token_id"] as? String)?.hasPrefix("tok-") == true })
                #expect(page["next"] as? Int == entries.last?["seq"] as? Int)
            }
        }
        // Append-only: the store refuses to change or remove an entry.
        #expect(throws: (any Error).self) { try store.pool.write { try $0.execute(sql: "UPDATE audit_log SET identity = 'mallory'") } }
        #expect(throws: (any Error).self) { try store.pool.write { try $0.execute(sql: "DELETE FROM audit_log") } }
        #expect(try store.audit(after: 0, limit: 100).count == 4)
    }

    /// Sends `body` (JSON) with `token`; returns the status and the answer as JSON.
    static func call(_ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ token: String,
                     _ body: String? = nil) async throws -> (status: Int, json: [String: Any], error: String) {
        try await client.execute(uri: uri, method: method, headers: headers(token), body: body.map { ByteBuffer(string: $0) }) { response in
            let json = (try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]) ?? [:]
            return (Int(response.status.code), json, json["error"] as? String ?? "")
        }
    }

    @Test func namespacesKeepTeamsApart() async throws {
        _ = try namespaces.create("team-a")
        _ = try namespaces.create("team-b")
        let devA = try tokens.create(name: "a", identity: "alice", role: .developer, namespace: "team-a").secret
        let adminA = try tokens.create(name: "a-admin", role: .admin, namespace: "team-a").secret
        let viewerB = try tokens.create(name: "b", role: .viewer, namespace: "team-b").secret
        let dev = try tokens.create(name: "everywhere", role: .developer).secret
        _ = try secrets.create(name: "db", value: Array("default-value".utf8), at: 1)
        _ = try secrets.create(name: "db", value: Array("team-a-value".utf8), in: "team-a", at: 1)
        _ = try secrets.create(name: "other", value: [1], at: 1)
        let task = #"{"name":"t","image":"registry.example/app:v1","secrets":[{"name":"db"}]}"#
        try await withApp { client in
            // Made in the token's namespace; listed there alone.
            let a = try await Self.call(client, .post, "/tasks", devA, task)
            #expect(a.status == 201, "\(a.error)")
            let aID = try #require(a.json["id"] as? String)
            let made = try await service.task(aID)
            #expect(made.spec.namespace == "team-a")
            let d = try await Self.call(client, .post, "/tasks", dev, task)
            let dID = try #require(d.json["id"] as? String)
            let madeInDefault = try await service.task(dID)
            #expect(madeInDefault.spec.namespace == nil, "default is stored as before namespaces")
            func ids(_ uri: String, _ token: String) async throws -> [String] {
                try await (Self.call(client, .get, uri, token).json["tasks"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            }
            #expect(try await ids("/tasks", devA) == [aID])
            #expect(try await ids("/tasks", dev) == [dID])
            #expect(try await ids("/tasks?namespace=team-a", dev) == [aID])
            #expect(try await Set(ids("/tasks?namespace=*", dev)) == [aID, dID])
            // Another namespace's task is not there for a bound token, nor with an explicit namespace.
            let hidden = try await Self.call(client, .get, "/tasks/\(dID)", devA)
            #expect(hidden.status == 404 && hidden.error.contains("no task \(dID) in namespace team-a"), "\(hidden.error)")
            #expect(try await Self.call(client, .post, "/tasks/\(dID)/stop", devA).status == 404)
            #expect(try await Self.call(client, .get, "/tasks/\(aID)?namespace=default", dev).status == 404)
            #expect(try await Self.call(client, .get, "/tasks/\(aID)", dev).status == 200, "a cluster-wide token finds any task by id")
            let elsewhere = try await Self.call(client, .get, "/tasks?namespace=default", devA)
            #expect(elsewhere.status == 403 && elsewhere.error.contains("may not work in namespace default"), "\(elsewhere.error)")
            #expect(try await Self.call(client, .get, "/tasks?namespace=nope", dev).error == "no namespace nope")
            #expect(try await Self.call(client, .post, "/tasks?namespace=*", dev, task).status == 422)

            // Secrets: the same name is another secret in each namespace; a task sees its own.
            let listed = try await Self.call(client, .get, "/secrets", devA).json["secrets"] as? [[String: Any]] ?? []
            #expect(listed.map { "\($0["namespace"] ?? "")/\($0["name"] ?? "")" } == ["team-a/db"])
            let missing = try await Self.call(client, .post, "/tasks", devA, #"{"name":"t","image":"r/i:1","secrets":[{"name":"other"}]}"#)
            #expect(missing.status == 422 && missing.error.contains("no secret other in namespace team-a"), "\(missing.error)")

            // Actors: the same.
            let actor = try await Self.call(client, .post, "/actors", devA, #"{"name":"echo","image":"registry.example/echo:v1"}"#)
            #expect(actor.status == 201, "\(actor.error)")
            let actorID = try #require(actor.json["id"] as? String)
            #expect((try await Self.call(client, .get, "/actors", dev).json["actors"] as? [[String: Any]] ?? []).isEmpty)
            #expect(try await Self.call(client, .post, "/actors/\(actorID)/messages", viewerB, "hi").status == 404)
            let other = try await Self.call(client, .get, "/actors/\(actorID)", try tokens.create(name: "vb2", role: .viewer, namespace: "team-b").secret)
            #expect(other.status == 404 && other.error.contains("in namespace team-b"), "\(other.error)")

            // A namespace's admin has nothing of the cluster's, and manages its namespace's tokens alone.
            #expect(try await Self.call(client, .get, "/audit", adminA).status == 403)
            #expect(try await Self.call(client, .post, "/namespaces", adminA, #"{"name":"mine"}"#).status == 403)
            let token = try await Self.call(client, .post, "/tokens", adminA, #"{"name":"x","role":"viewer"}"#)
            #expect(token.status == 201 && token.json["namespace"] as? String == "team-a", "\(token.error)")
            let outside = try await Self.call(client, .post, "/tokens", adminA, #"{"name":"y","role":"admin","namespace":"default"}"#)
            #expect(outside.status == 403 && outside.error.contains("makes tokens of namespace team-a alone"), "\(outside.error)")
            let ownTokens = try await Self.call(client, .get, "/tokens", adminA).json["tokens"] as? [[String: Any]] ?? []
            #expect(Set(ownTokens.compactMap { $0["name"] as? String }) == ["a", "a-admin", "x"], "\(ownTokens)")
            let cluster = try #require(try tokens.list().first { $0.name == "everywhere" })
            #expect(try await Self.call(client, .delete, "/tokens/\(cluster.id)", adminA).status == 404)
            #expect(try await Self.call(client, .post, "/tokens/\(cluster.id)/rotate", adminA).status == 403)
            let madeToken = try #require(token.json["id"] as? String)
            #expect(try await Self.call(client, .delete, "/tokens/\(madeToken)", adminA).status == 200)
            #expect(try await Self.call(client, .delete, "/tasks/\(aID)", adminA).status == 204, "and everything in its namespace")
            let me = try await Self.call(client, .get, "/whoami", adminA).json
            let permissions = me["permissions"] as? [String] ?? []
            #expect(me["namespace"] as? String == "team-a" && permissions.contains("tokens:manage") && !permissions.contains("audit:read"))

            // Namespaces themselves.
            let seen = try await Self.call(client, .get, "/namespaces", viewerB).json["namespaces"] as? [[String: Any]] ?? []
            #expect(seen.compactMap { $0["name"] as? String } == ["team-b"])
            #expect(try await Self.call(client, .get, "/namespaces/team-a", viewerB).status == 404)
            let all = try await Self.call(client, .get, "/namespaces", Self.admin).json["namespaces"] as? [[String: Any]] ?? []
            #expect(all.compactMap { $0["name"] as? String } == ["default", "team-a", "team-b"])
            let usage = try await Self.call(client, .get, "/namespaces/team-a", Self.admin).json["usage"] as? [String: Any] ?? [:]
            #expect(usage["tasks"] as? Int == 0 && usage["actors"] as? Int == 1 && usage["secrets"] as? Int == 1, "\(usage)")
            let busy = try await Self.call(client, .delete, "/namespaces/team-a", Self.admin)
            #expect(busy.status == 409 && busy.error.contains("holds 1 actor, 1 secret"), "\(busy.error)")
            #expect(try await Self.call(client, .delete, "/namespaces/team-b", Self.admin).status == 204)
            #expect(try await Self.call(client, .delete, "/namespaces/default", Self.admin).status == 409)
            #expect(try await Self.call(client, .post, "/namespaces", Self.admin, #"{"name":"Team_A"}"#).status == 422)
            #expect(try await Self.call(client, .post, "/namespaces", Self.admin, #"{"name":"team-a"}"#).status == 409)
            #expect(try await Self.call(client, .post, "/namespaces", dev, #"{"name":"mine"}"#).status == 403)
            let bound = try await Self.call(client, .post, "/tokens", Self.admin, #"{"name":"x","role":"viewer","namespace":"nope"}"#)
            #expect(bound.status == 422 && bound.error.contains("no namespace nope"))
        }
        // The namespaces come back with the store.
        #expect(try Namespaces(store: store).list().map(\.name) == ["default", "team-a"])
    }

    @Test func quotasAreSetByClusterAdminsAndRefuseWhatCanNeverFit() async throws {
        _ = try namespaces.create("team-a")
        let adminA = try tokens.create(name: "a-admin", role: .admin, namespace: "team-a").secret
        try await withApp { client in
            let set = try await Self.call(client, .put, "/namespaces/team-a", Self.admin, #"{"quota":{"memory_bytes":1073741824,"actors":1}}"#)
            #expect(set.status == 200, "\(set.error)")
            #expect((set.json["quota"] as? [String: Any])?["memory_bytes"] as? Int == 1 << 30)
            let own = try await Self.call(client, .put, "/namespaces/team-a", adminA, #"{"quota":{}}"#)
            #expect(own.status == 403 && own.error.contains("namespaces:manage"), "a namespace's admin does not set its own quota")
            let bad = try await Self.call(client, .put, "/namespaces/team-a", Self.admin, #"{"quota":{"memory":"1G"}}"#)
            #expect(bad.status == 400 && bad.error.contains("unknown field"), "\(bad.error)")
            #expect(try await Self.call(client, .put, "/namespaces/nope", Self.admin, #"{"quota":{}}"#).status == 404)

            let big = try await Self.call(client, .post, "/tasks", adminA, #"{"name":"big","image":"r/i:1","resources":{"memory_bytes":2147483648}}"#)
            #expect(big.status == 422 && big.error == "namespace team-a's memory quota is 1 GiB: a task asking for 2 GiB can never run there", "\(big.error)")
            #expect(try await Self.call(client, .post, "/tasks", Self.admin, #"{"name":"big","image":"r/i:1","resources":{"memory_bytes":2147483648}}"#).status == 201,
                    "default has no quota")
            #expect(try await Self.call(client, .post, "/actors", adminA, #"{"name":"one","image":"r/a:1"}"#).status == 201)
            let second = try await Self.call(client, .post, "/actors", adminA, #"{"name":"two","image":"r/a:1"}"#)
            #expect(second.status == 409 && second.error == "namespace team-a is at its actor quota: 1 of 1", "\(second.error)")
            let got = try await Self.call(client, .get, "/namespaces/team-a", adminA).json
            #expect((got["usage"] as? [String: Any])?["actors"] as? Int == 1 && got["quota"] != nil)
            // Cleared: no limit.
            #expect(try await Self.call(client, .put, "/namespaces/team-a", Self.admin, #"{}"#).status == 200)
            #expect(try await Self.call(client, .post, "/actors", adminA, #"{"name":"two","image":"r/a:1"}"#).status == 201)
        }
        #expect(try Namespaces(store: store).get("team-a")?.quota == nil)
        let restored = try Namespaces(store: store)
        _ = try restored.setQuota("default", NamespaceQuota(runningTasks: 2))
        #expect(try Namespaces(store: store).quotas() == ["default": NamespaceQuota(runningTasks: 2)], "default's quota is kept too")
    }

    /// Names and id prefixes stand for ids in every path, within the request's namespace, as
    /// docker resolves containers: an id first, then a name, then a prefix; several matches are
    /// refused with the candidates.
    @Test func namesAndIDPrefixesAreHandles() async throws {
        _ = try namespaces.create("team-a")
        let devA = try tokens.create(name: "a", role: .developer, namespace: "team-a").secret
        try await withApp { client in
            func make(_ name: String, _ token: String = Self.admin) async throws -> String {
                let made = try await Self.call(client, .post, "/tasks", token, #"{"name":"\#(name)","image":"r/i:1"}"#)
                let id = made.json["id"] as? String
                #expect(id != nil, "\(made.error)")
                return id ?? ""
            }
            let solo = try await make("solo")
            _ = try await make("twin")
            _ = try await make("twin")
            let theirs = try await make("solo", devA)
            #expect(try await Self.call(client, .get, "/tasks/solo", Self.admin).json["id"] as? String == solo)
            #expect(try await Self.call(client, .get, "/tasks/solo", devA).json["id"] as? String == theirs, "a name is looked up in the namespace")
            #expect(try await Self.call(client, .get, "/tasks/solo?namespace=team-a", Self.admin).json["id"] as? String == theirs)
            let prefix = String(solo.prefix(8))
            #expect(try await Self.call(client, .get, "/tasks/\(prefix)", Self.admin).json["id"] as? String == solo)
            #expect(try await Self.call(client, .get, "/tasks/\(prefix)/results", Self.admin).error.contains("no result yet"), "the handler gets the id")
            let twins = try await Self.call(client, .get, "/tasks/twin", Self.admin)
            #expect(twins.status == 409 && twins.error.hasPrefix("twin is ambiguous: it names or begins 2 tasks"), "\(twins.error)")
            #expect(try await Self.call(client, .get, "/tasks/nothing-like-it", Self.admin).status == 404)
            #expect(try await Self.call(client, .get, "/tasks/\(prefix)", devA).status == 404, "another namespace's prefix is not there")
            #expect(try await Self.call(client, .post, "/tasks/solo/start", Self.admin).json["id"] as? String == solo)
            #expect(try await Self.call(client, .delete, "/tasks/solo", devA).status == 204)
            #expect(try await Self.call(client, .get, "/tasks/\(theirs)", Self.admin).status == 404)

            let actor = try await Self.call(client, .post, "/actors", Self.admin, #"{"name":"echoer","image":"r/echo:1"}"#)
            let actorID = try #require(actor.json["id"] as? String)
            #expect(try await Self.call(client, .get, "/actors/echoer", Self.admin).json["id"] as? String == actorID)
            #expect(try await Self.call(client, .get, "/actors/echoer/workers", Self.admin).status == 200)
            #expect(try await Self.call(client, .get, "/actors/echoer", devA).status == 404)
            // An actor's name is unique in its namespace (tasks' names are not: they are runs).
            let again = try await Self.call(client, .post, "/actors", Self.admin, #"{"name":"echoer","image":"r/echo:2"}"#)
            #expect(again.status == 409 && again.error.contains("has an actor named echoer already (\(actorID))"), "\(again.error)")
            let theirsActor = try await Self.call(client, .post, "/actors", devA, #"{"name":"echoer","image":"r/echo:1"}"#)
            #expect(theirsActor.status == 201, "another namespace may have its own: \(theirsActor.error)")
            let other = try await Self.call(client, .post, "/actors", Self.admin, #"{"name":"other","image":"r/echo:1"}"#)
            #expect(other.status == 201)
            let rename = try await Self.call(client, .put, "/actors/other", Self.admin, #"{"name":"echoer"}"#)
            #expect(rename.status == 409, "a rename onto a taken name is refused: \(rename.error)")
            #expect(try await Self.call(client, .put, "/actors/other", Self.admin, #"{"name":"other","description":"same name"}"#).status == 200)
            #expect(try await Self.call(client, .get, "/actors/echoer", Self.admin).json["image"] as? String == "r/echo:1")
        }
    }

    /// Abaco's nonces: a capability on one actor at one level, spent one request at a time.
    @Test func aNonceWorksItsUsesOnItsActorAndThenStops() async throws {
        let viewer = try tokens.create(name: "v", role: .viewer).secret
        try await withApp { client in
            let made = try await Self.call(client, .post, "/actors", Self.admin, #"{"name":"echoer","image":"r/echo:1"}"#)
            let actorID = try #require(made.json["id"] as? String)
            let other = try #require(try await Self.call(client, .post, "/actors", Self.admin, #"{"name":"other","image":"r/echo:1"}"#).json["id"] as? String)
            let created = try await Self.call(client, .post, "/actors/echoer/nonces", Self.admin, #"{"level":"execute","max_uses":2}"#)
            #expect(created.status == 201, "\(created.error)")
            let nonce = try #require(created.json["x_nonce"] as? String)
            #expect(nonce.hasPrefix("pnc_") && created.json["actor_id"] as? String == actorID)
            func post(_ uri: String) async throws -> (Int, String) {
                try await client.execute(uri: uri, method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "hi")) { r in
                    (Int(r.status.code), Self.message(r))
                }
            }
            // Elsewhere it is refused (without spending a use): another actor, a task route.
            #expect(try await post("/actors/\(other)/messages?x-nonce=\(nonce)").0 == 403)
            #expect(try await post("/tasks?x-nonce=\(nonce)").0 == 401)
            #expect(try await Self.call(client, .post, "/actors/\(actorID)/nonces?x-nonce=\(nonce)", "").status != 201)
            // Twice on its actor (by name as by id), then it stops.
            #expect(try await post("/actors/echoer/messages?x-nonce=\(nonce)").0 == 202)
            #expect(try await post("/actors/\(actorID)/messages?x-nonce=\(nonce)").0 == 202)
            let spent = try await post("/actors/\(actorID)/messages?x-nonce=\(nonce)")
            #expect(spent.0 == 401 && spent.1.contains("invalid nonce"), "\(spent.1)")
            let listed = try await Self.call(client, .get, "/actors/echoer/nonces", Self.admin).json["nonces"] as? [[String: Any]] ?? []
            #expect(listed.count == 1 && listed[0]["uses"] as? Int == 2 && listed[0]["x_nonce"] == nil)

            // A read nonce reads and does not post; a revoked one stops at once.
            let reader = try await Self.call(client, .post, "/actors/echoer/nonces", Self.admin, #"{"level":"read","expires_in_seconds":60}"#)
            let readNonce = try #require(reader.json["x_nonce"] as? String)
            let read = try await client.execute(uri: "/actors/echoer?x-nonce=\(readNonce)", method: .get) { Int($0.status.code) }
            #expect(read == 200)
            let refused = try await post("/actors/echoer/messages?x-nonce=\(readNonce)")
            #expect(refused.0 == 403 && refused.1.contains("lacks permission actors:message"), "\(refused.1)")
            let readerID = try #require(reader.json["id"] as? String)
            #expect(try await Self.call(client, .delete, "/actors/echoer/nonces/\(readerID)", Self.admin).status == 204)
            #expect(try await client.execute(uri: "/actors/echoer?x-nonce=\(readNonce)", method: .get) { Int($0.status.code) } == 401)
            // Making one takes actors:write; one that never ends is refused.
            #expect(try await Self.call(client, .post, "/actors/echoer/nonces", viewer, #"{"max_uses":1}"#).status == 403)
            #expect(try await Self.call(client, .post, "/actors/echoer/nonces", Self.admin, #"{"level":"execute"}"#).status == 422)
            // The audit log says which nonce did what.
            let entries = try await Self.call(client, .get, "/audit?limit=1000", Self.admin).json["entries"] as? [[String: Any]] ?? []
            #expect(entries.filter { ($0["identity"] as? String)?.hasPrefix("nonce:") == true && $0["status"] as? Int == 202 }.count == 2)
        }
    }

    /// Abaco's actor permissions: a grant to an identity adds to what its role gives, on that
    /// actor alone, across namespaces too, and is taken back at once.
    @Test func grantsAddToARoleOnOneActor() async throws {
        _ = try namespaces.create("team-a")
        _ = try namespaces.create("team-b")
        let owner = try tokens.create(name: "o", identity: "alice", role: .developer, namespace: "team-a").secret
        let bob = try tokens.create(name: "b", identity: "bob", role: .viewer, namespace: "team-a").secret
        let carol = try tokens.create(name: "c", identity: "carol", role: .developer, namespace: "team-b").secret
        try await withApp { client in
            let made = try await Self.call(client, .post, "/actors", owner, #"{"name":"echoer","image":"r/echo:1"}"#)
            let actor = try #require(made.json["id"] as? String)
            let other = try #require(try await Self.call(client, .post, "/actors", owner, #"{"name":"other","image":"r/echo:1"}"#).json["id"] as? String)
            // Before: a viewer may not message; another namespace does not see it.
            #expect(try await Self.call(client, .post, "/actors/\(actor)/messages", bob, "{}").status == 403)
            #expect(try await Self.call(client, .post, "/actors/\(actor)/messages", carol, "{}").status == 404)
            #expect(try await Self.call(client, .post, "/actors/\(actor)/permissions", owner, #"{"identity":"bob","level":"execute"}"#).status == 201)
            #expect(try await Self.call(client, .post, "/actors/\(actor)/permissions", owner, #"{"identity":"carol","level":"read"}"#).status == 201)
            #expect(try await Self.call(client, .post, "/actors/\(actor)/permissions", bob, #"{"identity":"bob","level":"update"}"#).status == 403,
                    "execute does not grant")
            // After: bob messages this actor (not the other); carol reads it from team-b, by id.
            #expect(try await Self.call(client, .post, "/actors/\(actor)/messages", bob, "{}").status == 202)
            #expect(try await Self.call(client, .post, "/actors/echoer/messages", bob, "{}").status == 202, "by name in his namespace")
            #expect(try await Self.call(client, .post, "/actors/\(other)/messages", bob, "{}").status == 403)
            #expect(try await Self.call(client, .get, "/actors/\(actor)", carol).status == 200)
            #expect(try await Self.call(client, .post, "/actors/\(actor)/messages", carol, "{}").status == 404, "read is not execute")
            #expect(try await Self.call(client, .get, "/actors/\(other)", carol).status == 404)
            let listed = try await Self.call(client, .get, "/actors/\(actor)/permissions", owner).json["permissions"] as? [[String: Any]] ?? []
            #expect(listed.map { "\($0["identity"] ?? "")=\($0["level"] ?? "")@\($0["granted_by"] ?? "")" } == ["bob=execute@alice", "carol=read@alice"])
            // Taken back: at once.
            #expect(try await Self.call(client, .delete, "/actors/\(actor)/permissions/bob", owner).status == 204)
            #expect(try await Self.call(client, .post, "/actors/\(actor)/messages", bob, "{}").status == 403)
            #expect(try await Self.call(client, .delete, "/actors/\(actor)/permissions/bob", owner).status == 404)
        }
        // Deleting the actor takes its grants with it.
        #expect(try store.grants(actorId: "nothing").isEmpty)
    }

    /// A database from before roles: its tokens become admins (they could do everything), named
    /// identities after themselves, and keep working.
    @Test func tokensFromBeforeRolesBecomeAdmins() throws {
        let path = dir.path + "/old.db"
        do {
            let pool = try DatabasePool(path: path)
            try SQLiteStore.migrator.migrate(pool, upTo: "v4-secrets")
            try pool.write { db in
                try db.execute(sql: "INSERT INTO api_tokens (id, name, sha256, created_at) VALUES ('tok-old', 'deploy', ?, 5)",
                               arguments: [APITokens.hash("ptk_old")])
            }
        }
        let upgraded = try SQLiteStore(path: path)
        let tokens = try APITokens(store: upgraded)
        guard case .success(let token) = tokens.authenticate("ptk_old") else { Issue.record("the old token still works"); return }
        #expect(token.role == .admin && token.identity == "deploy" && token.expiresAt == nil)
    }
}
