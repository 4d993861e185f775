import Foundation
import HummingbirdTesting
import Hummingbird
import PropellerCore
@testable import PropellerManager
import PropellerTestSupport
import Testing

@Suite("REST API")
struct APITests: Sendable {
    static let token = "s3cret-token"
    let dir: ScopedTempDirectory
    let bus = RecordingBus()
    let service: TaskService
    let actors: ActorService
    let store: SQLiteStore
    let secrets: SecretVault

    init() throws {
        dir = try ScopedTempDirectory("propeller-api")
        store = try SQLiteStore(path: dir.path + "/manager.db")
        secrets = SecretVault(store: store, box: try SecretBox(key: SecureRandom.bytes(32)))
        service = TaskService(store: store, bus: bus, secrets: secrets)
        actors = ActorService(tasks: service)
    }

    var auth: HTTPFields { [.authorization: "Bearer \(Self.token)", .contentType: "application/json"] }

    func withApp(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let tokens = try APITokens(store: store, configured: [("test", "sha256:" + APITokens.hash(Self.token))])
        var api = ManagerAPI(service: service, actors: actors, tokens: tokens)
        api.secrets = secrets
        api.namespaces = try Namespaces(store: store)
        api.nonces = ActorNonces(store: store)
        api.grants = store
        let app = Application(router: api.router())
        try await app.test(.router) { client in try await body(client) }
    }

    func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    func expectError(_ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, body: String? = nil, headers: HTTPFields? = nil,
                     status: HTTPResponse.Status, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await client.execute(uri: uri, method: method, headers: headers ?? auth, body: body.map { ByteBuffer(string: $0) }) { response in
            #expect(response.status == status, "\(method) \(uri)", sourceLocation: sourceLocation)
            let message = (try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])?["error"] as? String
            #expect(message?.contains(text) == true, "error was \(message ?? "none")", sourceLocation: sourceLocation)
        }
    }

    @Test func tokensAreMadeListedAndRevokedAndOnlyTheirHashIsStored() async throws {
        try await withApp { client in
            var secret = ""
            var id = ""
            try await client.execute(uri: "/tokens", method: .post, headers: auth, body: ByteBuffer(string: #"{"name":"ci","role":"developer"}"#)) { response in
                #expect(response.status == .created)
                let body = try json(response)
                secret = try #require(body["token"] as? String)
                id = try #require(body["id"] as? String)
            }
            #expect(secret.hasPrefix("ptk_") && secret.count == 68)
            let bearer: HTTPFields = [.authorization: "Bearer \(secret)"]
            try await client.execute(uri: "/tasks", method: .get, headers: bearer) { #expect($0.status == .ok) }
            try await client.execute(uri: "/tokens", method: .get, headers: auth) { response in
                let tokens = try #require(try json(response)["tokens"] as? [[String: Any]])
                #expect(tokens.compactMap { $0["name"] as? String }.sorted() == ["ci", "test"])
                #expect(!String(buffer: response.body).contains(secret))
            }
            // The database holds the hash, never the secret.
            let stored = try store.tokens()
            #expect(stored.contains { $0.sha256 == APITokens.hash(secret) })
            #expect(try !Data(contentsOf: URL(fileURLWithPath: store.path)).contains(Data(secret.utf8)))

            try await client.execute(uri: "/tokens/\(id)", method: .delete, headers: auth) { response in
                #expect(response.status == .ok)
                try #expect(json(response)["revoked_at"] as? Double != nil)
            }
            try await expectError(client, .get, "/tasks", headers: bearer, status: .unauthorized, containing: "invalid bearer token")
            try await expectError(client, .delete, "/tokens/nope", status: .notFound, containing: "no token nope")
            try await expectError(client, .delete, "/tokens/\(id)", headers: bearer, status: .unauthorized, containing: "invalid bearer token")
            let own = "cfg-" + APITokens.hash(Self.token).prefix(12)
            try await expectError(client, .delete, "/tokens/\(own)", status: .conflict, containing: "is the one making this request")
            try await expectError(client, .post, "/tokens", body: #"{"name":"","role":"viewer"}"#, status: .unprocessableContent, containing: "name: required")
            try await expectError(client, .post, "/tokens", body: #"{"name":"x","admin":true}"#, status: .badRequest, containing: "unknown field")
            try await expectError(client, .post, "/tokens", body: #"{"name":3}"#, status: .badRequest, containing: "name")
        }
        // A revoked configured token stays revoked when the manager comes back with the same config.
        let configured = try APITokens(store: store, configured: [("test", "sha256:" + APITokens.hash(Self.token))])
        #expect((try? configured.authenticate(Self.token).get()) != nil)
        let cfg = try #require(try configured.list().first { $0.name == "test" })
        _ = try configured.revoke(id: cfg.id)
        #expect(configured.authenticate(Self.token) == .failure(.unknown))
        let restarted = try APITokens(store: store, configured: [("test", "sha256:" + APITokens.hash(Self.token))])
        #expect(restarted.authenticate(Self.token) == .failure(.unknown))
        #expect(try restarted.list().first { $0.id == cfg.id }?.revokedAt != nil)
    }

    @Test func healthIsOpenAndEverythingElseNeedsTheToken() async throws {
        try await withApp { client in
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/openapi.json", method: .get) { #expect($0.status == .ok) }
            try await expectError(client, .get, "/tasks", headers: [:], status: .unauthorized, containing: "missing bearer token")
            try await expectError(client, .get, "/tasks", headers: [.authorization: "Bearer wrong"], status: .unauthorized, containing: "invalid bearer token")
            try await expectError(client, .get, "/metrics", headers: [.authorization: "Basic abc"], status: .unauthorized, containing: "invalid")
            try await client.execute(uri: "/tasks", method: .get, headers: auth) { #expect($0.status == .ok) }
        }
    }

    @Test func taskRoutesFromCreateToDelete() async throws {
        await service.handleAnnouncement(announcement("p", memory: 4 << 30))
        try await withApp { client in
            let created = try await client.execute(uri: "/tasks", method: .post, headers: auth,
                                                   body: ByteBuffer(string: #"{"name":"hello","image":"127.0.0.1:5000/hello:v2","command":["echo","hi"],"env":{"A":"1"},"resources":{"memory_bytes":67108864,"cpu_millis":500},"timeout_seconds":30}"#)) { response in
                #expect(response.status == .created)
                return try json(response)
            }
            let id = try #require(created["id"] as? String)
            #expect(created["state"] as? String == "created")
            #expect(created["name"] as? String == "hello")
            #expect((created["resources"] as? [String: Any])?["memory_bytes"] as? Int == 67108864)

            try await client.execute(uri: "/tasks/\(id)", method: .put, headers: auth, body: ByteBuffer(string: #"{"env":{"B":"2"}}"#)) { response in
                #expect(response.status == .ok)
                try #expect((json(response)["env"] as? [String: String]) == ["B": "2"])
            }
            try await client.execute(uri: "/tasks/\(id)/start", method: .post, headers: auth) { response in
                #expect(response.status == .ok)
                try #expect(json(response)["state"] as? String == "scheduled")
            }
            #expect(bus.startedOn[id] == "p")
            try await expectError(client, .post, "/tasks/\(id)/start", status: .conflict, containing: "already scheduled")
            try await expectError(client, .put, "/tasks/\(id)", body: #"{"name":"x"}"#, status: .conflict, containing: "only when created or finished")
            try await expectError(client, .delete, "/tasks/\(id)", status: .conflict, containing: "stop it first")
            try await expectError(client, .get, "/tasks/\(id)/results", status: .notFound, containing: "no result yet")

            await service.handleLog(LogBlock(taskId: id, attempt: 1, stream: .stdout, offset: 0, data: "partial "), from: "p")
            try await client.execute(uri: "/tasks/\(id)/logs", method: .get, headers: auth) { response in
                try #expect(json(response)["stdout"] as? String == "partial ")
            }
            await service.handleResult(TaskResult(taskId: id, attempt: 1, propletId: "p", state: .completed, exitCode: 0, stdoutTail: "hi\n", stderrTail: "warn\n"))
            try await client.execute(uri: "/tasks/\(id)/results", method: .get, headers: auth) { response in
                let r = try json(response)
                #expect(r["exit_code"] as? Int == 0)
                #expect(r["stdout_tail"] as? String == "hi\n")
            }
            try await client.execute(uri: "/tasks/\(id)/logs", method: .get, headers: auth) { response in
                try #expect(json(response)["stderr"] as? String == "warn\n")
            }
            try await client.execute(uri: "/tasks/\(id)", method: .get, headers: auth) { response in
                let t = try json(response)
                #expect(t["state"] as? String == "completed")
                let states = (t["history"] as? [[String: Any]])?.compactMap { $0["state"] as? String }
                #expect(states == ["created", "pending", "scheduled", "completed"])
            }
            try await client.execute(uri: "/tasks/\(id)/watch", method: .get, headers: auth) { response in
                let lines = String(buffer: response.body).split(separator: "\n")
                #expect(lines.count == 1 && lines[0].contains("\"completed\""))
            }
            try await client.execute(uri: "/tasks?state=completed&limit=10", method: .get, headers: auth) { response in
                let page = try json(response)
                #expect(page["total"] as? Int == 1)
                #expect((page["tasks"] as? [[String: Any]])?.first?["id"] as? String == id)
            }
            try await client.execute(uri: "/tasks/\(id)", method: .delete, headers: auth) { #expect($0.status == .noContent) }
            try await expectError(client, .get, "/tasks/\(id)", status: .notFound, containing: "no task")
        }
    }

    @Test(arguments: [
        ("{\"name\":", HTTPResponse.Status.badRequest, "malformed JSON"),
        ("[1,2]", .badRequest, "expected a JSON object"),
        ("", .badRequest, "empty"),
        (#"{"name":"x","image":"a","memory":"3G"}"#, .badRequest, "unknown field \"memory\""),
        (#"{"name":"x","image":"a","resources":{"memory":1}}"#, .badRequest, "unknown field \"resources.memory\""),
        (#"{"name":5,"image":"a"}"#, .badRequest, "name: expected a string"),
        (#"{"name":"x","image":"a","resources":{"memory_bytes":"big"}}"#, .badRequest, "resources.memory_bytes: expected a whole number"),
        (#"{"name":"x","image":"a","env":{"A":1}}"#, .badRequest, "env.A: expected a string"),
        (#"{"image":"a"}"#, .unprocessableContent, "name: required"),
        (#"{"name":"x"}"#, .unprocessableContent, "image: required"),
        (#"{"name":"x","image":"UPPER/case"}"#, .unprocessableContent, "image:"),
        (#"{"name":"x","image":"a","resources":{"memory_bytes":-1}}"#, .unprocessableContent, "must not be negative"),
        (#"{"name":"x","image":"a","resources":{"cpu_millis":-5}}"#, .unprocessableContent, "cpu_millis: must not be negative"),
        (#"{"name":"x","image":"a","resources":{"memory_bytes":1000}}"#, .unprocessableContent, "minimum is 6 MiB"),
        (#"{"name":"x","image":"a","timeout_seconds":0}"#, .unprocessableContent, "timeout_seconds"),
        (#"{"name":"x","image":"a","restart_policy":{"mode":"always"}}"#, .unprocessableContent, "restart_policy.mode"),
        (#"{"name":"x","image":"a","network":"../x"}"#, .unprocessableContent, "network"),
        (#"{"name":"x","image":"a","publish":[{"container_port":80}]}"#, .unprocessableContent, "publish: needs a network"),
        (#"{"name":"x","image":"a","workdir":"relative"}"#, .unprocessableContent, "workdir"),
        (#"{"name":"x","image":"a","command":[]}"#, .unprocessableContent, "command"),
        (#"{"name":"x","image":"a","proplet_id":"a/b"}"#, .unprocessableContent, "proplet_id"),
    ])
    func badCreateRequestsSayWhatIsWrong(body: String, status: HTTPResponse.Status, text: String) async throws {
        try await withApp { client in
            try await expectError(client, .post, "/tasks", body: body, status: status, containing: text)
            try await client.execute(uri: "/tasks", method: .get, headers: auth) { try #expect(json($0)["total"] as? Int == 0) }
        }
    }

    @Test func unknownIdsAndRoutesAre404AndBadQueriesAre400() async throws {
        try await withApp { client in
            for (method, uri) in [(HTTPRequest.Method.get, "/tasks/nope"), (.put, "/tasks/nope"), (.delete, "/tasks/nope"), (.post, "/tasks/nope/start"),
                                  (.post, "/tasks/nope/stop"), (.get, "/tasks/nope/results"), (.get, "/tasks/nope/logs"), (.get, "/tasks/nope/watch"),
                                  (.get, "/proplets/nope"), (.delete, "/proplets/nope")] {
                try await expectError(client, method, uri, body: method == .put ? #"{"name":"x"}"# : nil, status: .notFound, containing: "no ")
            }
            try await expectError(client, .get, "/no/such/route", status: .notFound, containing: "no route")
            let huge = #"{"name":"x","image":"a","env":{"A":""# + String(repeating: "x", count: 2 << 20) + #""}}"#
            try await expectError(client, .post, "/tasks", body: huge, status: .contentTooLarge, containing: "larger than")
            try await expectError(client, .get, "/tasks?limit=5000", status: .badRequest, containing: "limit")
            try await expectError(client, .get, "/tasks?offset=-1", status: .badRequest, containing: "offset")
            try await expectError(client, .get, "/tasks?state=sleeping", status: .badRequest, containing: "state")
            try await expectError(client, .get, "/proplets?limit=abc", status: .badRequest, containing: "limit")
        }
    }

    @Test func propletRoutesAndMetrics() async throws {
        await service.handleAnnouncement(announcement("p1", memory: 4 << 30))
        await service.handleAnnouncement(announcement("p2", memory: 2 << 30))
        await service.markDead("p2", reason: "test")
        _ = try await service.create(TaskSpec(name: "t", image: "a", resources: Resources(memoryBytes: 1 << 30)), start: true)
        try await withApp { client in
            try await client.execute(uri: "/proplets", method: .get, headers: auth) { response in
                let page = try json(response)
                #expect(page["total"] as? Int == 2)
                let proplets = page["proplets"] as? [[String: Any]] ?? []
                #expect(proplets.compactMap { $0["id"] as? String } == ["p1", "p2"])
                let allocated = proplets.compactMap { ($0["allocated"] as? [String: Any])?["memory_bytes"] as? Int }
                #expect(allocated.reduce(0, +) == 1 << 30)
            }
            try await expectError(client, .delete, "/proplets/p1", status: .conflict, containing: "alive")
            try await client.execute(uri: "/proplets/p2", method: .get, headers: auth) { try #expect(json($0)["alive"] as? Bool == false) }
            try await client.execute(uri: "/proplets/p2", method: .delete, headers: auth) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/metrics", method: .get, headers: auth) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("propeller_tasks{state=\"scheduled\"} 1"))
                #expect(text.contains("propeller_proplets{status=\"alive\"} 1"))
                #expect(text.contains("propeller_placements_total 1"))
                #expect(text.contains("propeller_queue_length 0"))
                #expect(text.contains("propeller_http_request_duration_seconds_count{method=\"GET\",route=\"/proplets\",status=\"200\"} 1"))
            }
        }
    }

    /// A secret's value goes in and never comes out of the API; a task names it and its start,
    /// alone, carries the value to the proplet.
    @Test func secretsGoInAndOnlyTheProplettGetsTheirValues() async throws {
        await service.handleAnnouncement(announcement("p", memory: 4 << 30))
        let value = "s3cr3t-\u{1F511}"
        let base64 = Data(value.utf8).base64EncodedString()
        try await withApp { client in
            try await client.execute(uri: "/secrets", method: .post, headers: auth, body: ByteBuffer(string: #"{"name":"db","value":"\#(base64)"}"#)) { response in
                #expect(response.status == .created)
                #expect(!String(buffer: response.body).contains(base64))
                try #expect(json(response)["size_bytes"] as? Int == value.utf8.count)
            }
            try await expectError(client, .post, "/secrets", body: #"{"name":"db","value":"eA=="}"#, status: .conflict, containing: "exists")
            try await expectError(client, .post, "/secrets", body: #"{"name":"../x","value":"eA=="}"#, status: .unprocessableContent, containing: "name")
            try await expectError(client, .post, "/secrets", body: #"{"name":"x","value":"%%%"}"#, status: .unprocessableContent, containing: "base64")
            try await expectError(client, .post, "/secrets", body: #"{"name":"x"}"#, status: .unprocessableContent, containing: "required")
            let big = Data(repeating: 7, count: SecretVault.maxBytes + 1).base64EncodedString()
            try await expectError(client, .post, "/secrets", body: #"{"name":"big","value":"\#(big)"}"#, status: .unprocessableContent, containing: "64")
            try await client.execute(uri: "/secrets", method: .get, headers: auth) { response in
                #expect(!String(buffer: response.body).contains(base64))
                let names = (try json(response)["secrets"] as? [[String: Any]])?.map { $0["name"] as? String }
                #expect(names == ["db"])
            }
            try await expectError(client, .post, "/tasks", body: #"{"name":"t","image":"r/i","secrets":[{"name":"nope"}]}"#,
                                  status: .unprocessableContent, containing: "no secret nope")
            try await expectError(client, .post, "/tasks", body: #"{"name":"t","image":"r/i","secrets":[{"name":"db","target":"/proc/x"}]}"#,
                                  status: .unprocessableContent, containing: "/proc")
            let created = try await client.execute(uri: "/tasks", method: .post, headers: auth,
                                                   body: ByteBuffer(string: #"{"name":"t","image":"r/i","start":true,"secrets":[{"name":"db"}]}"#)) { response in
                #expect(response.status == .created)
                #expect(!String(buffer: response.body).contains(base64))
                return try json(response)
            }
            let id = try #require(created["id"] as? String)
            #expect((created["secrets"] as? [[String: Any]])?.first?["target"] as? String == "/run/secrets/db")
            let start = try #require(bus.starts.withLock { $0.first { $0.0.taskId == id } })
            #expect(start.1 == "p")
            #expect(start.0.secretValues == [SecretValue(name: "db", value: Data(value.utf8))])
            try await client.execute(uri: "/secrets/db", method: .delete, headers: auth) { #expect($0.status == .noContent) }
            try await expectError(client, .delete, "/secrets/db", status: .notFound, containing: "no secret db")
        }
    }

    /// Every path and method of /openapi.json is routed (not a "no route" 404), and every
    /// route the router has is in the document.
    @Test func theOpenAPIDocumentMatchesTheRoutes() async throws {
        try await withApp { client in
            let doc = try await client.execute(uri: "/openapi.json", method: .get, headers: auth) { try json($0) }
            let paths = try #require(doc["paths"] as? [String: [String: Any]])
            var documented = Set<String>()
            for (path, ops) in paths {
                for method in ops.keys where method != "parameters" {
                    documented.insert("\(method.uppercased()) \(path)")
                    let uri = path.replacingOccurrences(of: "{id}", with: "unknown-id").replacingOccurrences(of: "{eid}", with: "e")
                        .replacingOccurrences(of: "{name}", with: "unknown-name").replacingOccurrences(of: "{path}", with: "a/file")
                        .replacingOccurrences(of: "{wid}", with: "w").replacingOccurrences(of: "{sid}", with: "s")
                    try await client.execute(uri: uri, method: HTTPRequest.Method(method.uppercased())!, headers: auth,
                                             body: method == "get" || method == "delete" ? nil : ByteBuffer(string: "{}")) { response in
                        let text = String(buffer: response.body)
                        #expect(!text.contains("no route"), "\(method) \(path) is documented but not routed")
                        #expect(response.status.code < 500, "\(method) \(path) answered \(response.status)")
                    }
                }
            }
            // A catch-all (`**`) is documented as the {path} parameter it is.
            // The web console's files (/ui) are pages, not API.
            let routed = Set(ManagerAPI(service: service, actors: actors, tokens: nil).router().routes.map {
                "\($0.method.rawValue) \($0.path.description.replacingOccurrences(of: "**", with: "{path}"))"
            }.filter { !$0.hasPrefix("GET /ui") })
            #expect(routed == documented)
        }
    }
}
