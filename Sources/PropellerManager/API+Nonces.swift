import Foundation
import Hummingbird
import PropellerCore

/// `/actors/{id}/nonces`: capabilities on one actor for callers without an account (Abaco's),
/// made and revoked by those who may change the actor; a nonce cannot make another.
extension ManagerAPI {
    struct NonceCreate: Decodable {
        var level: String?
        var maxUses: Int?
        var expiresInSeconds: Double?
    }

    /// POST answers the secret once, beside the record.
    struct CreatedNonce: Encodable {
        var nonce: ActorNonce
        var secret: String

        enum Keys: String, CodingKey { case nonce = "x_nonce" }
        func encode(to encoder: any Encoder) throws {
            try nonce.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(secret, forKey: .nonce)
        }
    }

    func addNonceRoutes(_ router: Router<APIContext>, _ actors: ActorService) {
        @Sendable func store() throws -> ActorNonces {
            guard let nonces else { throw APIError(status: 503, "nonces are not kept by this manager") }
            return nonces
        }
        router.post("/actors/{id}/nonces") { request, context in
            let nonces = try store()
            if context.principal?.nonce != nil { throw APIError(status: 403, "a nonce cannot make another") }
            let actor = try await actors.actor(try context.parameters.require("id"))
            let body = try TaskRequest.decode(NonceCreate.self, try await collect(request, limit: 4096),
                                              fields: ["level", "max_uses", "expires_in_seconds"], nested: [:])
            let levelName = body.level ?? ActorAccessLevel.execute.rawValue
            guard let level = ActorAccessLevel(rawValue: levelName) else {
                throw APIError.unprocessable("level: one of \(ActorAccessLevel.allCases.map(\.rawValue).joined(separator: ", ")) (not \(levelName))")
            }
            if let n = body.maxUses, !(1...1_000_000).contains(n) { throw APIError.unprocessable("max_uses: 1 to 1000000") }
            var expiresAt: Double?
            if let seconds = body.expiresInSeconds {
                guard seconds.isFinite, seconds >= 1, seconds <= Self.maxTokenLifetime else {
                    throw APIError.unprocessable("expires_in_seconds: 1 to \(Int(Self.maxTokenLifetime)) (ten years)")
                }
                expiresAt = WallClock.now() + seconds
            }
            guard body.maxUses != nil || expiresAt != nil else {
                throw APIError.unprocessable("a nonce needs max_uses, expires_in_seconds or both: one that never ends is a token")
            }
            let (nonce, secret) = try nonces.create(actorId: actor.id, level: level, maxUses: body.maxUses, expiresAt: expiresAt,
                                                    by: context.principal?.identity ?? "anonymous")
            service.logger.notice("nonce created", metadata: ["actor": "\(actor.id)", "nonce": "\(nonce.id)", "level": "\(level.rawValue)"])
            return try encode(CreatedNonce(nonce: nonce, secret: secret), status: .created)
        }
        router.get("/actors/{id}/nonces") { _, context in
            let actor = try await actors.actor(try context.parameters.require("id"))
            return try encode(["nonces": try store().list(actorId: actor.id)])
        }
        router.delete("/actors/{id}/nonces/{nid}") { _, context in
            let actor = try await actors.actor(try context.parameters.require("id"))
            let id = try context.parameters.require("nid")
            guard try store().delete(id: id, actorId: actor.id) else { throw APIError.notFound("no nonce \(id) on actor \(actor.id)") }
            return Response(status: .noContent)
        }
    }

    /// `/actors/{id}/permissions`: grants of read, execute or update on one actor to other
    /// identities (Abaco's), beyond what their roles give, across namespaces too.
    func addGrantRoutes(_ router: Router<APIContext>, _ actors: ActorService) {
        @Sendable func store() throws -> any GrantStore {
            guard let grants else { throw APIError(status: 503, "grants are not kept by this manager") }
            return grants
        }
        router.get("/actors/{id}/permissions") { _, context in
            let actor = try await actors.actor(try context.parameters.require("id"))
            return try encode(["permissions": try store().grants(actorId: actor.id)])
        }
        router.post("/actors/{id}/permissions") { request, context in
            let grants = try store()
            if context.principal?.nonce != nil { throw APIError(status: 403, "a nonce cannot grant") }
            let actor = try await actors.actor(try context.parameters.require("id"))
            struct Body: Decodable { var identity: String?; var level: String? }
            let body = try TaskRequest.decode(Body.self, try await collect(request, limit: 4096), fields: ["identity", "level"], nested: [:])
            guard let identity = body.identity?.trimmingCharacters(in: .whitespacesAndNewlines), !identity.isEmpty, identity.count <= 100 else {
                throw APIError.unprocessable("identity: required, 1 to 100 characters")
            }
            guard let level = body.level.flatMap(ActorAccessLevel.init(rawValue:)) else {
                throw APIError.unprocessable("level: one of \(ActorAccessLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let grant = ActorGrant(actorId: actor.id, identity: identity, level: level, grantedBy: context.principal?.identity ?? "anonymous",
                                   grantedAt: WallClock.now())
            try grants.setGrant(grant)
            service.logger.notice("actor permission granted", metadata: ["actor": "\(actor.id)", "identity": "\(identity)", "level": "\(level.rawValue)"])
            return try encode(grant, status: .created)
        }
        router.delete("/actors/{id}/permissions/{identity}") { _, context in
            let actor = try await actors.actor(try context.parameters.require("id"))
            let identity = try context.parameters.require("identity")
            guard try store().deleteGrant(actorId: actor.id, identity: identity) else { throw APIError.notFound("\(identity) holds no grant on actor \(actor.id)") }
            return Response(status: .noContent)
        }
    }
}
