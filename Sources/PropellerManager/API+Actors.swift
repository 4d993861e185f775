import Foundation
import HTTPTypes
import Hummingbird
import PropellerCore

/// `/actors`: register images, post messages, read executions, logs and results, scale workers.
extension ManagerAPI {
    func addActorRoutes(_ router: Router<APIContext>, _ actors: ActorService) {
        router.post("/actors") { request, context in
            let body = try ActorRequest.parse(try await collect(request))
            var spec = try ActorRequest.spec(from: body)
            try checkIdentityRole(spec.apiTokenRole, context)
            spec.namespace = try context.storedNamespace()
            try checkSecretsExist(spec.secrets, in: try context.namespaceForWrite())
            if let limit = namespaces?.get(context.namespace)?.quota?.actors {
                let count = await actors.list().filter { $0.spec.namespace.orDefaultNamespace == context.namespace }.count
                if count >= limit { throw APIError.conflict("namespace \(context.namespace) is at its actor quota: \(count) of \(limit)") }
            }
            return try encode(try await actors.create(spec), status: .created)
        }
        router.get("/actors") { request, context in
            let (offset, limit) = try page(request)
            let only = context.listNamespace
            let all = await actors.list().filter { only == nil || $0.spec.namespace.orDefaultNamespace == only }
            return try encode(ActorPage(offset: offset, limit: limit, total: all.count, actors: Array(all.dropFirst(offset).prefix(limit))))
        }
        router.get("/actors/{id}") { _, context in
            try encode(try await actors.actor(try context.parameters.require("id")))
        }
        router.put("/actors/{id}") { request, context in
            let body = try ActorRequest.parse(try await collect(request))
            if let role = body.apiTokenRole, let asked = Role(rawValue: role) { try checkIdentityRole(asked, context) }
            if let secrets = body.secrets { try checkSecretsExist(try TaskRequest.checked(secrets: secrets), in: context.namespace) }
            return try encode(try await actors.update(try context.parameters.require("id")) { spec in try ActorRequest.apply(body, to: &spec) })
        }
        router.delete("/actors/{id}") { _, context in
            try await actors.delete(try context.parameters.require("id"))
            return Response(status: .noContent)
        }

        router.post("/actors/{id}/messages") { request, context in
            let id = try context.parameters.require("id")
            _ = try await actors.actor(id)
            let query = try MessageQuery(request.uri.queryParameters, maxTimeout: actors.configuration.maxSyncTimeout)
            let body = try await collect(request, limit: actors.configuration.messageLimit)
            let contentType = try MessageQuery.contentType(request.headers[.contentType], body: body)
            let execution = try await actors.send(id, body: Data(body), contentType: contentType, env: query.env)
            guard query.sync else { return try encode(ExecutionAccepted(executionId: execution.id, status: execution.status), status: .accepted) }
            guard let done = await actors.wait(for: execution.id, timeout: query.timeout) else {
                return try encode(ExecutionAccepted(executionId: execution.id, status: (try? await actors.execution(id, execution.id).status) ?? .submitted),
                                  status: .accepted)
            }
            let results = (try? await actors.executionResults(id, done.id)) ?? Data()
            var headers: HTTPFields = [.contentType: "application/octet-stream"]
            headers[Self.executionIDHeader] = done.id
            headers[Self.executionStatusHeader] = done.status.rawValue
            if let code = done.exitCode { headers[Self.exitCodeHeader] = String(code) }
            if let error = done.error { headers[Self.executionErrorHeader] = String(error.prefix(500).map { $0.isASCII && !$0.isNewline ? $0 : "?" }) }
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: results)))
        }
        router.get("/actors/{id}/messages") { _, context in
            try encode(["messages": try await actors.inboxLength(try context.parameters.require("id"))])
        }
        router.delete("/actors/{id}/messages") { _, context in
            try encode(["purged": try await actors.purge(try context.parameters.require("id"))])
        }

        router.get("/actors/{id}/executions") { request, context in
            let (offset, limit) = try page(request)
            let (total, list, totals) = try await actors.executions(try context.parameters.require("id"), offset: offset, limit: limit)
            return try encode(ExecutionPage(offset: offset, limit: limit, total: total, totals: totals, executions: list))
        }
        router.get("/actors/{id}/executions/{eid}") { _, context in
            try encode(try await actors.execution(try context.parameters.require("id"), try context.parameters.require("eid")))
        }
        router.delete("/actors/{id}/executions/{eid}") { _, context in
            try encode(try await actors.kill(try context.parameters.require("id"), try context.parameters.require("eid")), status: .accepted)
        }
        router.get("/actors/{id}/executions/{eid}/logs") { _, context in
            try encode(try await actors.executionLogs(try context.parameters.require("id"), try context.parameters.require("eid")))
        }
        router.get("/actors/{id}/executions/{eid}/results") { _, context in
            let data = try await actors.executionResults(try context.parameters.require("id"), try context.parameters.require("eid"))
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }

        router.get("/actors/{id}/workers") { _, context in
            try encode(WorkerList(workers: try await actors.workerList(try context.parameters.require("id"))))
        }
        router.post("/actors/{id}/workers") { request, context in
            let id = try context.parameters.require("id")
            let object = try TaskRequest.object(try await collect(request))
            try TaskRequest.rejectUnknown(object, allowed: ["num"], path: "")
            guard let num = object["num"] as? Int, !(object["num"] is Bool), num >= 1 else { throw APIError.unprocessable("num: required, a whole number ≥ 1") }
            return try encode(WorkerList(workers: try await actors.ensureWorkers(id, count: num)))
        }
        router.delete("/actors/{id}/workers/{wid}") { _, context in
            try await actors.retireWorker(try context.parameters.require("id"), workerID: try context.parameters.require("wid"))
            return Response(status: .accepted)
        }

        router.get("/actors/{id}/state") { _, context in
            let state = try await actors.state(try context.parameters.require("id"))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: state)))
        }
        router.post("/actors/{id}/state") { request, context in
            let id = try context.parameters.require("id")
            let bytes = try await collect(request)
            do {
                _ = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
            } catch {
                throw APIError.badRequest("malformed JSON: \(TaskRequest.parserMessage(error))")
            }
            try await actors.setState(id, String(decoding: bytes, as: UTF8.self))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }

    static let executionIDHeader = header("X-Propeller-Execution-Id")
    static let executionStatusHeader = header("X-Propeller-Execution-Status")
    static let exitCodeHeader = header("X-Propeller-Exit-Code")
    static let executionErrorHeader = header("X-Propeller-Execution-Error")

    /// A header name spelled in this file (valid by construction).
    static func header(_ name: String) -> HTTPField.Name {
        guard let n = HTTPField.Name(name) else { preconditionFailure("invalid header name \(name)") }
        return n
    }
}

struct ActorPage: Encodable {
    var offset: Int
    var limit: Int
    var total: Int
    var actors: [ActorRecord]
}

struct ExecutionPage: Encodable {
    var offset: Int
    var limit: Int
    var total: Int
    var totals: ExecutionTotals
    var executions: [ExecutionRecord]
}

struct ExecutionAccepted: Encodable {
    var executionId: String
    var status: ExecutionStatus
}

struct WorkerList: Encodable {
    var workers: [WorkerRecord]
}

/// A message's query string: `sync`, `timeout`, and variables for the execution's environment.
struct MessageQuery {
    var sync = false
    var timeout: Duration = .seconds(30)
    var env: [String: String] = [:]

    init(_ parameters: Hummingbird.Parameters, maxTimeout: Duration) throws {
        timeout = min(timeout, maxTimeout)
        for (key, value) in parameters {
            let name = String(key)
            switch name {
            case "sync":
                guard let b = ["true": true, "1": true, "false": false, "0": false][String(value)] else { throw APIError.badRequest("sync: expected true or false") }
                sync = b
            case "timeout":
                guard let t = Double(String(value)), t.isFinite, t > 0, t <= Double(maxTimeout.components.seconds) else {
                    throw APIError.badRequest("timeout: expected seconds, more than 0 and at most \(maxTimeout.components.seconds)")
                }
                timeout = .saturating(seconds: t)
            case "namespace", "x-nonce":
                continue  // the access layer's, not the execution's
            default:
                guard Self.isVariableName(name) else { throw APIError.badRequest("query parameter \"\(name)\": not a valid environment variable name") }
                guard name != "MSG" && !name.hasPrefix("PROPELLER_") else {
                    throw APIError.badRequest("query parameter \"\(name)\": MSG and PROPELLER_* are set by Propeller")
                }
                env[name] = String(value)
            }
        }
    }

    static func isVariableName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return false }
        return s.count <= 128 && s.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }

    /// The message's content type (text when none is given); a JSON one must hold valid JSON.
    static func contentType(_ header: String?, body: [UInt8]) throws -> String {
        let type = header?.trimmingCharacters(in: .whitespaces) ?? ""
        if type.isEmpty { return "text/plain" }
        let essence = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        if essence == "application/json" || essence.hasSuffix("+json") {
            do {
                _ = try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
            } catch {
                throw APIError.badRequest("the message has content type \(essence) but is not valid JSON: \(TaskRequest.parserMessage(error))")
            }
        }
        return type
    }
}

/// `POST|PUT /actors` bodies.
enum ActorRequest {
    static let fields: Set<String> = ["name", "image", "description", "command", "default_env", "resources", "min_workers", "max_workers", "stateless",
                                      "labels", "constraints", "timeout_seconds", "volumes", "tmpfs", "secrets", "network", "api_token_role"]

    struct Body: Decodable {
        var name: String?
        var image: String?
        var description: String?
        var command: [String]?
        var defaultEnv: [String: String]?
        var resources: TaskRequest.ResourcesBody?
        var minWorkers: Int?
        var maxWorkers: Int?
        var stateless: Bool?
        var labels: [String: String]?
        var constraints: [String: String]?
        var timeoutSeconds: Double?
        var volumes: [TaskRequest.VolumeBody]?
        var tmpfs: [TaskRequest.TmpfsBody]?
        var secrets: [TaskRequest.SecretBody]?
        var network: String?
        var apiTokenRole: String?
    }

    static func parse(_ bytes: [UInt8]) throws -> Body {
        try TaskRequest.decode(Body.self, bytes, fields: fields, nested: ["resources": TaskRequest.resourceFields],
                               nestedLists: ["volumes": TaskRequest.volumeFields, "tmpfs": TaskRequest.tmpfsFields, "secrets": TaskRequest.secretFields])
    }

    static func spec(from body: Body) throws -> ActorSpec {
        let (name, image) = try TaskRequest.required(name: body.name, image: body.image)
        var spec = ActorSpec(name: name, image: image)
        try apply(body, to: &spec)
        return spec
    }

    static func apply(_ body: Body, to spec: inout ActorSpec) throws {
        if let name = body.name { spec.name = try TaskRequest.checked(name: name) }
        if let image = body.image { spec.image = try TaskRequest.checked(image: image) }
        if let d = body.description {
            guard d.count <= 4096 else { throw APIError.unprocessable("description: at most 4096 characters") }
            spec.description = d
        }
        if let command = body.command {
            spec.command = command.isEmpty ? nil : command
        }
        if let env = body.defaultEnv {
            try TaskRequest.checkEnvironment(env, field: "default_env")
            spec.defaultEnv = env
        }
        if let r = body.resources { try TaskRequest.apply(r, to: &spec.resources) }
        if let stateless = body.stateless { spec.stateless = stateless }
        if let n = body.maxWorkers {
            guard n >= 1, n <= 100 else { throw APIError.unprocessable("max_workers: must be 1 to 100") }
            spec.maxWorkers = n
        }
        if let n = body.minWorkers {
            guard n >= 0, n <= 100 else { throw APIError.unprocessable("min_workers: must be 0 to 100") }
            spec.minWorkers = n
        }
        guard spec.minWorkers <= spec.maxWorkers else { throw APIError.unprocessable("min_workers (\(spec.minWorkers)) must not exceed max_workers (\(spec.maxWorkers))") }
        if !spec.stateless && spec.maxWorkers > 1 {
            throw APIError.unprocessable("max_workers: a stateful actor (stateless false) has one worker at most")
        }
        if let labels = body.labels { spec.labels = labels }
        if let constraints = body.constraints { spec.constraints = constraints }
        if let t = body.timeoutSeconds { spec.timeoutSeconds = try TaskRequest.checkedTimeout(t) }
        if let volumes = body.volumes { spec.volumes = try TaskRequest.checked(volumes: volumes) }
        if let tmpfs = body.tmpfs { spec.tmpfs = try TaskRequest.checked(tmpfs: tmpfs) }
        if let secrets = body.secrets { spec.secrets = try TaskRequest.checked(secrets: secrets) }
        if let network = body.network {
            do { spec.network = try NetworkName.check(network) == "none" ? nil : network } catch let error as PropellerError {
                throw APIError.unprocessable("network: \(error.message)")
            }
        }
        if let role = body.apiTokenRole { spec.apiTokenRole = try TaskRequest.checked(apiTokenRole: role) }
        do {
            // The execution's own files live under /propeller (the proplet's ExecutionFiles): not a mount target.
            let targets = (spec.volumes ?? []).map(\.target) + (spec.tmpfs ?? []).map(\.target) + (spec.secrets ?? []).map(\.target)
            try MountTarget.checkDistinct(targets)
            if let clash = targets.first(where: { $0 == "/propeller" || $0.hasPrefix("/propeller/") }) {
                throw PropellerError(.invalidArgument, "\(clash) is where an execution's message and results are")
            }
        } catch let error as PropellerError {
            throw APIError.unprocessable("volumes, tmpfs, secrets: \(error.message)")
        }
    }
}
