import Foundation
import Hummingbird
import PropellerCore

/// `POST /proplets`, `GET /proplet-identities`, `POST /proplets/{id}/revoke`: proplet
/// identities on the broker, made and revoked while it runs (`propeller proplet add|revoke`).
extension ManagerAPI {
    func addPropletIdentityRoutes(_ router: Router<APIContext>) {
        @Sendable func identities() throws -> PropletIdentities {
            guard let propletIdentities else {
                throw APIError(status: 409, "this manager does not administer the broker: start it with --broker-admin dynsec (mosquitto's dynamic-security plugin) or --broker-admin nats, or provision proplets with `propeller provision add-proplet`")
            }
            return propletIdentities
        }
        router.post("/proplets") { request, context in
            let identities = try identities()
            struct Body: Decodable { var name: String?; var namespaces: [String]? }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["name", "namespaces"], nested: [:])
            if let wanted = body.namespaces {
                guard !wanted.isEmpty, wanted.count <= 100 else { throw APIError.unprocessable("namespaces: 1 to 100 names (leave it out for any)") }
                for n in wanted where !(namespaces?.exists(n) ?? (n == Namespaces.defaultName)) {
                    throw APIError.unprocessable("namespaces: no namespace \(n) (make it first: propeller namespace create \(n))")
                }
            }
            let name = body.name?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            guard !name.isEmpty, name.count <= 100, !name.contains(where: { $0.isNewline }) else {
                throw APIError.unprocessable("name: required, 1 to 100 characters on one line")
            }
            let who = context.principal?.identity ?? "anonymous"
            let added: PropletIdentities.Added
            do {
                added = try await identities.add(name: name, namespaces: body.namespaces, by: who)
            } catch let error as PropellerError where error.code == .unavailable || error.code == .notFound || error.code == .systemCall {
                throw APIError(status: 503, "the broker did not take proplet \(name): \(error.message)")
            }
            if let held = added.identity.namespaces { service.heldToNamespaces.withLock { $0[added.identity.id] = held } }
            service.logger.notice("proplet identity added", metadata: ["proplet": "\(added.identity.id)", "name": "\(name)", "by": "\(who)"])
            return try encode(added, status: .created)
        }
        router.get("/proplet-identities") { _, _ in
            try encode(["identities": try identities().list()])
        }
        router.post("/proplets/{id}/revoke") { _, context in
            let identities = try identities()
            let id = try context.parameters.require("id")
            let who = context.principal?.identity ?? "anonymous"
            let revoked: PropletIdentity?
            do {
                revoked = try await identities.revoke(id, by: who)
            } catch let error as PropellerError where error.code == .unavailable || error.code == .notFound || error.code == .systemCall {
                throw APIError(status: 503, "the broker did not revoke proplet \(id); it may still log in: \(error.message)")
            }
            guard let revoked else {
                throw APIError(status: 404, "no proplet identity \(id) made through the API (one provisioned in the broker's files is removed from them)")
            }
            // Off the broker now: its work goes elsewhere at once, and what it still sends is dropped.
            service.revokedProplets.withLock { _ = $0.insert(id) }
            await service.markDead(id, reason: "its identity was revoked by \(who)")
            service.logger.notice("proplet identity revoked", metadata: ["proplet": "\(id)", "by": "\(who)"])
            return try encode(revoked)
        }
    }
}
