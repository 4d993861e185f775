import Foundation
import Hummingbird
import PropellerCore

/// The manager's REST API (ARCHITECTURE.md): routes, auth, errors as `{"error": "…"}`, metrics.
public struct ManagerAPI: Sendable {
    public let service: TaskService
    /// The actor layer; nil leaves the /actors routes out.
    public let actors: ActorService?
    public let metrics: ManagerMetrics
    /// The bearer tokens that may use the API; nil: no authentication (`--insecure-no-auth`).
    public let tokens: APITokens?
    /// Bodies above this are refused (413); an actor message's own limit is its layer's.
    public var maxBodyBytes = ManagerAPI.defaultMaxBodyBytes
    /// The body limit of every route but an actor message's.
    public static let defaultMaxBodyBytes = 1 << 20
    /// The managers that share the store, when there are several (nil: this one alone).
    public var cluster: (any ClusterView)?
    /// `/secrets` (nil: answered 503, secrets not configured).
    public var secrets: SecretVault?
    /// Where requests are recorded (nil: not recorded, `/audit` answers 404).
    public var audit: AuditLog?
    /// The namespaces (nil: only `default`, and `/namespaces` cannot make others).
    public var namespaces: Namespaces?
    /// Actors' nonces (nil: none can be made or used).
    public var nonces: ActorNonces?
    /// Identities' grants on actors (nil: none).
    public var grants: (any GrantStore)?
    /// Proplet identities on the broker (nil: the manager does not administer it, `--broker-admin`).
    public var propletIdentities: PropletIdentities?

    public init(service: TaskService, actors: ActorService? = nil, metrics: ManagerMetrics = ManagerMetrics(), tokens: APITokens?) {
        self.service = service
        self.actors = actors
        self.metrics = metrics
        self.tokens = tokens
    }

    /// A task may ask for a token of a role whose every permission (in a namespace) its creator
    /// has: no one makes a task that can do more than they can.
    func checkIdentityRole(_ role: Role?, _ context: APIContext) throws {
        guard let role, let principal = context.principal else { return }
        let wanted = role.permissions.filter { !$0.isClusterWide }
        if let missing = wanted.subtracting(principal.permissions).sorted().first {
            throw APIError(status: 403, "api_token_role \(role.rawValue): \(principal.description) lacks \(missing.rawValue), which that role has")
        }
    }

    public func router() -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.add(middleware: ErrorAndMetricsMiddleware(metrics: metrics, traces: service.traces))
        router.add(middleware: AccessMiddleware(tokens: tokens, audit: audit, namespaces: namespaces, nonces: nonces, grants: grants, resolve: { [service, actors] collection, handle, namespace in
            switch collection {
            case "tasks":
                return try await service.resolveTask(handle, namespace: namespace).map { ($0.id, $0.spec.namespace.orDefaultNamespace) }
            case "actors":
                guard let actors else { return nil }
                if let namespace = service.actorNamespaces.withLock({ $0[handle] }) { return (handle, namespace) }
                if let a = try? await actors.actor(handle) { return (a.id, a.spec.namespace.orDefaultNamespace) }
                let candidates = await actors.list().filter { namespace == nil || $0.spec.namespace.orDefaultNamespace == namespace }
                return try TaskService.pick(handle, candidates, kind: "actor", name: \.spec.name, id: \.id).map { ($0.id, $0.spec.namespace.orDefaultNamespace) }
            default:
                return nil
            }
        }, cluster: cluster, logger: service.logger))

        router.get("/health") { _, _ in json(["status": "ok", "role": "leader"]) }
        router.get("/managers") { [cluster] _, _ in
            guard let cluster else {
                return try encode(ManagerClusterStatus(leader: nil, members: [.init(id: "manager", address: "", role: "leader", seenAgo: nil)]))
            }
            return try encode(try cluster.status())
        }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        router.get("/metrics") { _, _ in
            let counts = try await service.taskCountsForMetrics()
            let proplets = await service.propletList()
            let text = metrics.render(tasks: counts, propletsAlive: proplets.filter(\.alive).count, propletsDead: proplets.filter { !$0.alive }.count,
                                      placements: await service.placements, queueLength: await service.queueLength,
                                      heartbeats: await service.heartbeats)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }

        router.post("/tasks") { request, context in
            let body = try TaskRequest.parse(try await collect(request))
            var spec = try TaskRequest.spec(from: body)
            spec.namespace = try context.storedNamespace()
            try checkSecretsExist(spec.secrets, in: try context.namespaceForWrite())
            try checkQuota(spec.resources, in: context.namespace)
            try checkIdentityRole(spec.apiTokenRole, context)
            let task = try await service.create(spec, start: body.start ?? false)
            return try encode(task, status: .created)
        }
        router.get("/tasks") { request, context in
            let (offset, limit) = try page(request)
            var state: TaskState?
            if let s = request.uri.queryParameters["state"] {
                guard let parsed = TaskState(rawValue: String(s)) else {
                    throw APIError.badRequest("state: expected one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                state = parsed
            }
            let (total, tasks) = try await service.listTasks(offset: offset, limit: limit, state: state, namespace: context.listNamespace)
            return try encode(TaskPage(offset: offset, limit: limit, total: total, tasks: tasks))
        }
        router.get("/tasks/{id}") { _, context in
            let id = try context.parameters.require("id")
            let task = try await service.task(id)
            return try encode(TaskDetail(task: task, history: try await service.history(id)))
        }
        router.put("/tasks/{id}") { request, context in
            let id = try context.parameters.require("id")
            let body = try TaskRequest.parse(try await collect(request))
            if body.start != nil { throw APIError.badRequest("start: not accepted by PUT; use POST /tasks/{id}/start") }
            if body.secrets != nil {
                var probe = TaskSpec(name: "probe", image: "probe")
                try TaskRequest.apply(body, to: &probe)
                try checkSecretsExist(probe.secrets, in: context.namespace)
            }
            let namespace = context.namespace
            if let role = body.apiTokenRole, let asked = Role(rawValue: role) { try checkIdentityRole(asked, context) }
            return try encode(try await service.update(id) { spec in
                try TaskRequest.apply(body, to: &spec)
                try checkQuota(spec.resources, in: namespace)
            })
        }
        router.delete("/tasks/{id}") { _, context in
            try await service.delete(try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        router.post("/tasks/{id}/start") { _, context in
            try encode(try await service.start(try context.parameters.require("id")))
        }
        router.post("/tasks/{id}/stop") { request, context in
            var signal: Int32 = 15
            var grace = 10.0
            if let s = request.uri.queryParameters["signal"] {
                guard let v = Int32(s), v > 0, v < 65 else { throw APIError.badRequest("signal: expected a signal number 1 to 64") }
                signal = v
            }
            if let g = request.uri.queryParameters["grace"] {
                guard let v = Double(g), v.isFinite, InputLimits.graceSeconds.contains(v) else {
                    throw APIError.unprocessable("grace: must be 0 to \(Int(InputLimits.graceSeconds.upperBound)) seconds (got \(g))")
                }
                grace = v
            }
            return try encode(try await service.stop(try context.parameters.require("id"), signal: signal, grace: grace), status: .accepted)
        }
        router.get("/tasks/{id}/results") { _, context in
            let id = try context.parameters.require("id")
            let task = try await service.task(id)
            guard let result = task.result else { throw APIError.notFound("task \(id) has no result yet (it is \(task.state.rawValue))") }
            return try encode(result)
        }
        router.get("/tasks/{id}/outputs") { _, context in
            struct Listing: Encodable { var files: [OutputFile] }
            var files: [OutputFile] = []
            for try await reply in try await service.outputs(of: try context.parameters.require("id"), path: nil) { files += reply.listing ?? [] }
            return try encode(Listing(files: files))
        }
        router.get("/tasks/{id}/outputs/**") { _, context in
            let path = context.parameters.getCatchAll().joined(separator: "/")
            guard !path.isEmpty, !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
                throw APIError.unprocessable("outputs: a path under the output directory, without . or ..")
            }
            let replies = OutputReplies(try await service.outputs(of: try context.parameters.require("id"), path: path))
            // The first answer decides the status (a missing file is a 404); the rest streams.
            guard let first = try await replies.next() else { throw APIError(status: 502, "the proplet sent nothing") }
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody { writer in
                try await writer.write(ByteBuffer(bytes: first.data ?? Data()))
                while let reply = try await replies.next() { try await writer.write(ByteBuffer(bytes: reply.data ?? Data())) }
                try await writer.finish(nil)
            })
        }
        router.get("/tasks/{id}/logs") { request, context in
            let id = try context.parameters.require("id")
            if request.uri.queryParameters["follow"].map({ $0 == "true" || $0 == "1" }) ?? false {
                return try await followLogs(id)
            }
            return try encode(try await service.logs(id))
        }
        router.get("/tasks/{id}/watch") { _, context in
            let stream = try await service.watch(try context.parameters.require("id"))
            let encoder = WireCoding.encoder()
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
                for await task in stream {
                    var line = try encoder.encode(task)
                    line.append(0x0a)
                    try await writer.write(ByteBuffer(bytes: line))
                }
                try await writer.finish(nil)
            })
        }

        router.get("/tasks/{id}/stats") { request, context in
            let id = try context.parameters.require("id")
            guard request.uri.queryParameters["follow"] == "true" else { return try encode(try await service.usage(ofTask: id)) }
            let stream = try await service.followUsage(id)
            let encoder = WireCoding.encoder()
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
                for await sample in stream {
                    try await writer.write(ByteBuffer(bytes: try encoder.encode(sample) + [0x0a]))
                }
                try await writer.finish(nil)
            })
        }
        router.get("/proplets/{id}/stats") { _, context in
            try encode(try await service.usage(ofProplet: try context.parameters.require("id")))
        }
        router.get("/proplets") { request, _ in
            let (offset, limit) = try page(request)
            let all = await service.propletList()
            return try encode(PropletPage(offset: offset, limit: limit, total: all.count, proplets: Array(all.dropFirst(offset).prefix(limit))))
        }
        router.get("/proplets/{id}") { _, context in
            try encode(try await service.proplet(try context.parameters.require("id")))
        }
        router.delete("/proplets/{id}") { _, context in
            try await service.deleteProplet(try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        router.put("/proplets/{id}/eligibility") { request, context in
            struct Body: Decodable { var eligible: Bool }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["eligible"], nested: [:])
            return try encode(try await service.setEligibility(try context.parameters.require("id"), eligible: body.eligible))
        }
        router.post("/proplets/{id}/drain") { request, context in
            struct Body: Decodable { var deadlineSeconds: Double? }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["deadline_seconds"], nested: [:])
            return try encode(try await service.drain(try context.parameters.require("id"), deadlineSeconds: body.deadlineSeconds))
        }
        router.delete("/proplets/{id}/drain") { _, context in
            try encode(try await service.cancelDrain(try context.parameters.require("id")))
        }
        router.get("/volumes") { request, _ in
            struct Listed: Encodable { var proplet: String; var name: String; var sizeBytes: UInt64; var inUse: Int }
            let only = request.uri.queryParameters["proplet"].map(String.init)
            let all = await service.namedVolumes().filter { only == nil || $0.proplet == only }
            return try encode(["volumes": all.map { Listed(proplet: $0.proplet, name: $0.volume.name, sizeBytes: $0.volume.sizeBytes, inUse: $0.volume.inUse) }])
        }
        router.delete("/proplets/{id}/volumes/{name}") { _, context in
            try await service.removeVolume(try context.parameters.require("name"), on: try context.parameters.require("id"))
            return Response(status: .accepted)
        }
        addConsoleRoutes(router)
        addSessionRoutes(router)
        addTokenRoutes(router)
        addPropletIdentityRoutes(router)
        addNamespaceRoutes(router)
        addSecretRoutes(router)
        if let actors {
            addActorRoutes(router, actors)
            addNonceRoutes(router, actors)
            addGrantRoutes(router, actors)
        }
        return router
    }

    /// Stored output first (as two blocks), then live blocks until the task ends; one JSON
    /// object per line.
    private func followLogs(_ id: String) async throws -> Response {
        let live = try await service.follow(id)
        let stored = try await service.logs(id)
        let task = try await service.task(id)
        let encoder = WireCoding.encoder()
        let initial = [LogBlock(taskId: id, attempt: task.attempt, stream: .stdout, offset: 0, data: stored.stdout),
                       LogBlock(taskId: id, attempt: task.attempt, stream: .stderr, offset: 0, data: stored.stderr)].filter { !$0.data.isEmpty }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
            for block in initial {
                try await writer.write(ByteBuffer(bytes: try encoder.encode(block) + [0x0a]))
            }
            for await block in live {
                try await writer.write(ByteBuffer(bytes: try encoder.encode(block) + [0x0a]))
            }
            try await writer.finish(nil)
        })
    }

    func collect(_ request: Request, limit: Int? = nil) async throws -> [UInt8] {
        var request = request
        let limit = limit ?? maxBodyBytes
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch {
            throw APIError(status: 413, "request body larger than \(limit) bytes")
        }
    }
}

/// One request's answers, read first by the handler and then by the response body (in turn,
/// never at once).
final class OutputReplies: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<OutputReply, any Error>.AsyncIterator

    init(_ stream: AsyncThrowingStream<OutputReply, any Error>) { iterator = stream.makeAsyncIterator() }

    func next() async throws -> OutputReply? { try await iterator.next() }
}

struct TaskPage: Encodable {
    var offset: Int
    var limit: Int
    var total: Int
    var tasks: [TaskRecord]
}

struct PropletPage: Encodable {
    var offset: Int
    var limit: Int
    var total: Int
    var proplets: [PropletRecord]
}

/// GET /tasks/{id}: the task and its history.
struct TaskDetail: Encodable {
    var task: TaskRecord
    var history: [TaskTransition]

    enum Keys: String, CodingKey { case history }

    func encode(to encoder: any Encoder) throws {
        try task.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(history, forKey: .history)
    }
}

func page(_ request: Request) throws -> (Int, Int) {
    func number(_ name: String, default value: Int, max: Int) throws -> Int {
        guard let text = request.uri.queryParameters[name[...]] else { return value }
        guard let n = Int(text), n >= 0, n <= max else { throw APIError.badRequest("\(name): expected a whole number from 0 to \(max)") }
        return n
    }
    let offset = try number("offset", default: 0, max: Int(Int32.max))
    let limit = try number("limit", default: 100, max: 1000)
    return (offset, limit == 0 ? 100 : limit)
}

func encode<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try WireCoding.encoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

private func json(_ object: [String: String]) -> Response {
    (try? encode(object)) ?? Response(status: .ok)
}
