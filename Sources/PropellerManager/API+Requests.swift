import Foundation
import PropellerCore

/// Turns request bodies into specs with errors a person can act on: 400 for JSON that does not
/// parse or has a field of the wrong type or an unknown field, 422 for values out of range.
enum TaskRequest {
    static let fields: Set<String> = ["name", "image", "command", "env", "workdir", "user", "resources", "timeout_seconds", "labels",
                                      "constraints", "proplet_id", "restart_policy", "network", "volumes", "tmpfs", "secrets", "publish", "artifacts", "output", "api_token_role", "start"]
    static let artifactFields: Set<String> = ["url", "destination", "sha256"]
    static let publishFields: Set<String> = ["host_port", "container_port", "proto"]
    static let secretFields: Set<String> = ["name", "target"]
    static let volumeFields: Set<String> = ["name", "target", "read_only", "size_bytes"]
    static let tmpfsFields: Set<String> = ["target", "size_bytes"]
    static let resourceFields: Set<String> = ["cpu_millis", "memory_bytes", "pids"]
    static let restartFields: Set<String> = ["mode", "max_attempts"]

    struct Body: Decodable {
        var name: String?
        var image: String?
        var command: [String]?
        var env: [String: String]?
        var workdir: String?
        var user: String?
        var resources: ResourcesBody?
        var timeoutSeconds: Double?
        var labels: [String: String]?
        var constraints: [String: String]?
        var propletId: String?
        var restartPolicy: RestartBody?
        var network: String?
        var volumes: [VolumeBody]?
        var tmpfs: [TmpfsBody]?
        var secrets: [SecretBody]?
        var publish: [PublishBody]?
        var artifacts: [ArtifactBody]?
        var output: String?
        var apiTokenRole: String?
        var start: Bool?
    }

    struct ArtifactBody: Decodable {
        var url: String?
        var destination: String?
        var sha256: String?
    }

    struct PublishBody: Decodable {
        var hostPort: Int?
        var containerPort: Int?
        var proto: String?
    }

    struct SecretBody: Decodable {
        var name: String?
        var target: String?
    }

    struct VolumeBody: Decodable {
        var name: String?
        var target: String?
        var readOnly: Bool?
        var sizeBytes: Int64?
    }

    struct TmpfsBody: Decodable {
        var target: String?
        var sizeBytes: Int64?
    }

    /// Signed, so that a negative size is a 422 that names the field rather than a type error.
    struct ResourcesBody: Decodable {
        var cpuMillis: Int64?
        var memoryBytes: Int64?
        var pids: Int64?
    }

    struct RestartBody: Decodable {
        var mode: String?
        var maxAttempts: Int?
    }

    /// Parses and checks the top-level shape: a JSON object with known fields only.
    static func parse(_ bytes: [UInt8]) throws -> Body {
        try decode(Body.self, bytes, fields: fields, nested: ["resources": resourceFields, "restart_policy": restartFields],
                   nestedLists: ["volumes": volumeFields, "tmpfs": tmpfsFields, "secrets": secretFields, "publish": publishFields,
                                 "artifacts": artifactFields])
    }

    /// A JSON object as `B`: 400 for bad JSON, a field of the wrong type or an unknown field
    /// (at the top or in the `nested` objects).
    static func decode<B: Decodable>(_ type: B.Type, _ bytes: [UInt8], fields: Set<String>, nested: [String: Set<String>],
                                     nestedLists: [String: Set<String>] = [:]) throws -> B {
        let dict = try object(bytes)
        try rejectUnknown(dict, allowed: fields, path: "")
        for (key, allowed) in nested {
            if let inner = dict[key] as? [String: Any] { try rejectUnknown(inner, allowed: allowed, path: key + ".") }
        }
        for (key, allowed) in nestedLists {
            for (i, item) in (dict[key] as? [Any] ?? []).enumerated() {
                if let inner = item as? [String: Any] { try rejectUnknown(inner, allowed: allowed, path: "\(key)[\(i)].") }
            }
        }
        do {
            return try WireCoding.decoder().decode(B.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw APIError.badRequest("invalid field \(WireCoding.describe(error))")
        }
    }

    /// The body as a JSON object.
    static func object(_ bytes: [UInt8]) throws -> [String: Any] {
        guard !bytes.isEmpty else { throw APIError.badRequest("request body is empty: expected a JSON object") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw APIError.badRequest("malformed JSON: \(Self.parserMessage(error))")
        }
        guard let dict = object as? [String: Any] else { throw APIError.badRequest("expected a JSON object") }
        return dict
    }

    static func parserMessage(_ error: any Error) -> String {
        let ns = error as NSError
        return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? "the body is not valid JSON"
    }

    static func rejectUnknown(_ dict: [String: Any], allowed: Set<String>, path: String) throws {
        if let unknown = dict.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError.badRequest("unknown field \"\(path)\(unknown)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    /// A new spec from a create request.
    static func spec(from body: Body) throws -> TaskSpec {
        let (name, image) = try required(name: body.name, image: body.image)
        var spec = TaskSpec(name: name, image: image)
        try apply(body, to: &spec)
        return spec
    }

    /// Applies the fields present in `body` to `spec` (create and PUT).
    static func apply(_ body: Body, to spec: inout TaskSpec) throws {
        if let name = body.name { spec.name = try checked(name: name) }
        if let image = body.image { spec.image = try checked(image: image) }
        if let command = body.command {
            if command.isEmpty { throw APIError.unprocessable("command: must not be empty (leave it out to run the image's own command)") }
            spec.command = command
        }
        if let env = body.env {
            try checkEnvironment(env, field: "env")
            spec.env = env
        }
        if let workdir = body.workdir {
            guard workdir.hasPrefix("/") else { throw APIError.unprocessable("workdir: must be an absolute path") }
            spec.workdir = workdir
        }
        if let user = body.user { spec.user = user.isEmpty ? nil : user }
        if let r = body.resources { try apply(r, to: &spec.resources) }
        if let t = body.timeoutSeconds { spec.timeoutSeconds = try checkedTimeout(t) }
        if let labels = body.labels { spec.labels = labels }
        if let constraints = body.constraints { spec.constraints = constraints }
        if let pin = body.propletId {
            guard pin.isEmpty || Topics.isValidComponent(pin) else { throw APIError.unprocessable("proplet_id: not a valid proplet id") }
            spec.propletId = pin.isEmpty ? nil : pin
        }
        if let rp = body.restartPolicy {
            let mode = try rp.mode.map { m -> RestartPolicy.Mode in
                guard let mode = RestartPolicy.Mode(rawValue: m) else { throw APIError.unprocessable("restart_policy.mode: expected never or on-failure") }
                return mode
            } ?? spec.restartPolicy.mode
            let attempts = rp.maxAttempts ?? (mode == .onFailure ? 3 : 1)
            guard attempts >= 1, attempts <= 100 else { throw APIError.unprocessable("restart_policy.max_attempts: must be 1 to 100") }
            spec.restartPolicy = RestartPolicy(mode: mode, maxAttempts: attempts)
        }
        if let network = body.network {
            do { spec.network = try NetworkName.check(network) } catch let error as PropellerError { throw APIError.unprocessable("network: \(error.message)") }
        }
        if let publish = body.publish {
            let list = try publish.enumerated().map { i, p -> PortMapping in
                guard let container = p.containerPort, (1...65535).contains(container) else {
                    throw APIError.unprocessable("publish[\(i)].container_port: 1 to 65535")
                }
                let host = p.hostPort ?? 0
                guard (0...65535).contains(host) else { throw APIError.unprocessable("publish[\(i)].host_port: 0 (any) to 65535") }
                let m = PortMapping(hostPort: UInt16(host), containerPort: UInt16(container), proto: p.proto ?? "tcp")
                do { try m.check() } catch let error as PropellerError { throw APIError.unprocessable("publish[\(i)]: \(error.message)") }
                return m
            }
            let fixed = list.filter { $0.hostPort != 0 }.map(\.hostKey)
            guard Set(fixed).count == fixed.count else { throw APIError.unprocessable("publish: a host port appears twice") }
            spec.publish = list.isEmpty ? nil : list
        }
        if let artifacts = body.artifacts {
            guard artifacts.count <= 64 else { throw APIError.unprocessable("artifacts: at most 64") }
            let list = try artifacts.enumerated().map { i, a -> ArtifactSpec in
                guard let url = a.url else { throw APIError.unprocessable("artifacts[\(i)]: url is required") }
                do { return try ArtifactSpec(url: url, destination: a.destination, sha256: a.sha256) } catch let error as PropellerError {
                    throw APIError.unprocessable("artifacts[\(i)]: \(error.message)")
                }
            }
            spec.artifacts = list.isEmpty ? nil : list
        }
        if let output = body.output {
            do { spec.output = output.isEmpty ? nil : try MountTarget.check(output, what: "output") } catch let error as PropellerError {
                throw APIError.unprocessable(error.message)
            }
        }
        if let role = body.apiTokenRole { spec.apiTokenRole = try checked(apiTokenRole: role) }
        if spec.publish != nil && !NetworkName.isCNI(spec.network) {
            throw APIError.unprocessable("publish: needs a network of its own (network bridge, or one a proplet offers), not \(spec.network)")
        }
        if let volumes = body.volumes { spec.volumes = try checked(volumes: volumes) }
        if let tmpfs = body.tmpfs { spec.tmpfs = try checked(tmpfs: tmpfs) }
        if let secrets = body.secrets { spec.secrets = try checked(secrets: secrets) }
        do {
            try MountTarget.checkDistinct((spec.volumes ?? []).map(\.target) + (spec.tmpfs ?? []).map(\.target) + (spec.secrets ?? []).map(\.target)
                                          + (spec.artifacts ?? []).map(\.destination) + (spec.output.map { [$0] } ?? []))
        } catch let error as PropellerError {
            throw APIError.unprocessable("volumes, tmpfs, secrets: \(error.message)")
        }
    }

    /// Each entry of a list checked by `check` (given its index): a refusal of an entry is a 422
    /// with its message (which names the entry); nil when the list is empty.
    static func checkedList<Body, Value>(_ items: [Body], _ check: (Int, Body) throws -> Value) throws -> [Value]? {
        let list = try items.enumerated().map { i, item -> Value in
            do {
                return try check(i, item)
            } catch let error as PropellerError {
                throw APIError.unprocessable(error.message)
            }
        }
        return list.isEmpty ? nil : list
    }

    /// `volumes`: each a name, a target inside the container, read-only or not, and an optional
    /// size; nil when empty.
    static func checked(volumes: [VolumeBody]) throws -> [VolumeMount]? {
        try checkedList(volumes) { i, v in
            guard let name = v.name, let target = v.target else { throw APIError.unprocessable("volumes[\(i)]: name and target are required") }
            if let size = v.sizeBytes, size <= 0 { throw APIError.unprocessable("volumes[\(i)].size_bytes: must be positive") }
            let volume = VolumeMount(name: try VolumeName.check(name, what: "volumes[\(i)]"), target: try MountTarget.check(target, what: "volumes[\(i)]"),
                                     readOnly: v.readOnly ?? false, sizeBytes: v.sizeBytes.map { UInt64($0) })
            try volume.checkSize()
            return volume
        }
    }

    /// `secrets`: each a name and an optional target; nil when empty.
    static func checked(secrets: [SecretBody]) throws -> [SecretMount]? {
        try checkedList(secrets) { i, s in
            guard let name = s.name else { throw APIError.unprocessable("secrets[\(i)]: name is required") }
            return SecretMount(name: try VolumeName.check(name, what: "secrets[\(i)]"), target: try s.target.map { try MountTarget.check($0, what: "secrets[\(i)]") })
        }
    }

    /// `tmpfs`: each a target inside the container and an optional size; nil when empty.
    static func checked(tmpfs: [TmpfsBody]) throws -> [TmpfsMount]? {
        try checkedList(tmpfs) { i, t in
            guard let target = t.target else { throw APIError.unprocessable("tmpfs[\(i)]: target is required") }
            if let size = t.sizeBytes, size < 4096 { throw APIError.unprocessable("tmpfs[\(i)].size_bytes: at least 4096") }
            return TmpfsMount(target: try MountTarget.check(target, what: "tmpfs[\(i)]"), sizeBytes: t.sizeBytes.map { UInt64($0) })
        }
    }

    static func checkEnvironment(_ env: [String: String], field: String) throws {
        for key in env.keys where key.isEmpty || key.contains("=") || key.contains("\0") {
            throw APIError.unprocessable("\(field): invalid variable name \"\(key)\"")
        }
    }

    /// A timeout within ``InputLimits/timeoutSeconds`` (422 naming the range otherwise).
    /// A task's or actor's `api_token_role`: one of ``TaskIdentity/roles``; "" takes it away.
    static func checked(apiTokenRole role: String) throws -> Role? {
        guard role.isEmpty || TaskIdentity.roles.contains(where: { $0.rawValue == role }) else {
            throw APIError.unprocessable("api_token_role: one of \(TaskIdentity.roles.map(\.rawValue).joined(separator: ", ")) (not \(role))")
        }
        return Role(rawValue: role)
    }

    static func checkedTimeout(_ t: Double) throws -> Double {
        do { return try InputLimits.check(t, in: InputLimits.timeoutSeconds, field: "timeout_seconds") } catch let e as PropellerError { throw APIError.unprocessable(e.message) }
    }

    /// Applies the sizes present in `r`, refusing negative ones, ones above ``InputLimits`` and
    /// memory below 6 MiB.
    static func apply(_ r: ResourcesBody, to resources: inout Resources) throws {
        func check(_ value: Int64?, _ field: String, _ range: ClosedRange<UInt64>) throws -> UInt64? {
            guard let value else { return nil }
            guard value >= 0 else { throw APIError.unprocessable("resources.\(field): must not be negative (got \(value))") }
            guard range.contains(UInt64(value)) else {
                throw APIError.unprocessable("resources.\(field): must be \(range.lowerBound) to \(range.upperBound) (got \(value))")
            }
            return UInt64(value)
        }
        if let cpu = try check(r.cpuMillis, "cpu_millis", InputLimits.cpuMillis) { resources.cpuMillis = cpu }
        if let mem = try check(r.memoryBytes, "memory_bytes", InputLimits.memoryBytes) {
            guard mem == 0 || mem >= 6 << 20 else { throw APIError.unprocessable("resources.memory_bytes: the minimum is 6 MiB (6291456)") }
            resources.memoryBytes = mem
        }
        if let pids = try check(r.pids, "pids", InputLimits.pids) { resources.pids = pids }
    }

    /// The name and image a create request must have.
    static func required(name: String?, image: String?) throws -> (String, String) {
        guard let name, !name.trimmingCharacters(in: .whitespaces).isEmpty else { throw APIError.unprocessable("name: required, a non-empty string") }
        guard let image, !image.isEmpty else { throw APIError.unprocessable("image: required, an image reference like registry/repo:tag") }
        return (name, image)
    }

    static func checked(name: String) throws -> String {
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty, name.count <= 256 else { throw APIError.unprocessable("name: must be 1 to 256 characters") }
        return name
    }

    static func checked(image: String) throws -> String {
        do { _ = try ImageReference(parsing: image) } catch let e as PropellerError { throw APIError.unprocessable("image: \(e.message)") }
        return image
    }
}
