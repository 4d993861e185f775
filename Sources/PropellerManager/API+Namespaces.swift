import Foundation
import Hummingbird
import PropellerCore

/// `/namespaces`: made and removed by a cluster admin; listed and read (with what they hold) by
/// the roles that read, a token bound to a namespace seeing its own alone.
extension ManagerAPI {
    struct NamespaceView: Encodable {
        var name: String
        var createdAt: Double
        var quota: NamespaceQuota?
        var usage: NamespaceUsage?
    }

    static let quotaFields: Set<String> = ["cpu_millis", "memory_bytes", "running_tasks", "actors", "workers"]

    /// Refuses a quota with a value below 0 (JSON numbers that do not fit decode as errors).
    static func checked(_ quota: NamespaceQuota?) throws -> NamespaceQuota? {
        if let n = quota?.runningTasks, n < 0 { throw APIError.unprocessable("quota.running_tasks: 0 or more") }
        if let n = quota?.actors, n < 0 { throw APIError.unprocessable("quota.actors: 0 or more") }
        if let n = quota?.workers, n < 0 { throw APIError.unprocessable("quota.workers: 0 or more") }
        return quota
    }

    /// Why a task asking for `resources` is refused in `namespace` at once (its quota is
    /// smaller than the task), or nothing.
    func checkQuota(_ resources: Resources, in namespace: String) throws {
        if let never = namespaces?.get(namespace)?.quota?.never(resources, in: namespace) { throw APIError.unprocessable(never) }
    }

    func addNamespaceRoutes(_ router: Router<APIContext>) {
        router.get("/namespaces") { _, context in
            let bound = context.principal?.namespace
            let all = (namespaces?.list() ?? [NamespaceRecord(name: Namespaces.defaultName, createdAt: 0)]).filter { bound == nil || $0.name == bound }
            return try encode(["namespaces": all.map { NamespaceView(name: $0.name, createdAt: $0.createdAt, quota: $0.quota) }])
        }
        router.post("/namespaces") { request, _ in
            guard let namespaces else { throw APIError(status: 503, "namespaces are not kept by this manager") }
            struct Body: Decodable { var name: String?; var quota: NamespaceQuota? }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["name", "quota"], nested: ["quota": Self.quotaFields])
            guard let name = body.name else { throw APIError.unprocessable("name: required") }
            let made = try namespaces.create(name, quota: try Self.checked(body.quota))
            await service.setQuotas(namespaces.quotas())
            service.logger.notice("namespace created", metadata: ["namespace": "\(made.name)"])
            return try encode(NamespaceView(name: made.name, createdAt: made.createdAt, quota: made.quota, usage: NamespaceUsage()), status: .created)
        }
        router.put("/namespaces/{name}") { request, context in
            guard let namespaces else { throw APIError(status: 503, "namespaces are not kept by this manager") }
            let name = try context.parameters.require("name")
            struct Body: Decodable { var quota: NamespaceQuota? }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["quota"], nested: ["quota": Self.quotaFields])
            let changed = try namespaces.setQuota(name, try Self.checked(body.quota))
            await service.setQuotas(namespaces.quotas())
            service.logger.notice("namespace quota set", metadata: ["namespace": "\(name)", "quota": "\(changed.quota?.summary ?? "none")"])
            return try encode(NamespaceView(name: changed.name, createdAt: changed.createdAt, quota: changed.quota, usage: try await usage(of: name)))
        }
        router.get("/namespaces/{name}") { _, context in
            let name = try context.parameters.require("name")
            try visible(name, context)
            let record = namespaces?.get(name) ?? (name == Namespaces.defaultName ? NamespaceRecord(name: name, createdAt: 0) : nil)
            guard let record else { throw APIError.notFound("no namespace \(name)") }
            return try encode(NamespaceView(name: record.name, createdAt: record.createdAt, quota: record.quota, usage: try await usage(of: name)))
        }
        router.delete("/namespaces/{name}") { _, context in
            guard let namespaces else { throw APIError.notFound("no namespace \(try context.parameters.require("name"))") }
            let name = try context.parameters.require("name")
            guard namespaces.exists(name) else { throw APIError.notFound("no namespace \(name)") }
            let usage = try await usage(of: name)
            var held: [String] = []
            if usage.tasks > 0 { held.append("\(usage.tasks) task\(usage.tasks == 1 ? "" : "s")") }
            if usage.actors > 0 { held.append("\(usage.actors) actor\(usage.actors == 1 ? "" : "s")") }
            if usage.secrets > 0 { held.append("\(usage.secrets) secret\(usage.secrets == 1 ? "" : "s")") }
            if !held.isEmpty { throw APIError.conflict("namespace \(name) holds \(held.joined(separator: ", ")): delete them first") }
            try namespaces.delete(name)
            await service.setQuotas(namespaces.quotas())
            service.logger.notice("namespace deleted", metadata: ["namespace": "\(name)"])
            return Response(status: .noContent)
        }
    }

    /// A token bound to a namespace sees that one alone (others are "not there").
    private func visible(_ name: String, _ context: APIContext) throws {
        if let bound = context.principal?.namespace, bound != name { throw APIError.notFound("no namespace \(name)") }
    }

    private func usage(of namespace: String) async throws -> NamespaceUsage {
        var usage = try await service.usage(ofNamespace: namespace)
        usage.secrets = try secrets?.list(in: namespace).count ?? 0
        return usage
    }
}
