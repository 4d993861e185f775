import Foundation
import Hummingbird
import PropellerCore

/// `/secrets`: values go in once and never come out through the API; tasks ask for them by name.
extension ManagerAPI {
    struct SecretCreate: Decodable {
        var name: String?
        /// Base64.
        var value: String?
    }

    struct SecretList: Encodable {
        var secrets: [SecretInfo]
    }

    func vault() throws -> SecretVault {
        guard let secrets else { throw APIError(status: 503, "secrets are not configured on this manager (--secrets-key-file)") }
        return secrets
    }

    func addSecretRoutes(_ router: Router<APIContext>) {
        router.get("/secrets") { _, context in
            try encode(SecretList(secrets: try vault().list(in: context.listNamespace)))
        }
        router.post("/secrets") { request, context in
            let vault = try vault()
            // Base64 of the largest value, and room for the rest of the object.
            let body = try TaskRequest.decode(SecretCreate.self, try await collect(request, limit: SecretVault.maxBytes * 4 / 3 + 4096),
                                              fields: ["name", "value"], nested: [:])
            guard let name = body.name, let text = body.value else { throw APIError.unprocessable("name and value are required") }
            guard let value = Data(base64Encoded: text) else { throw APIError.unprocessable("value: not base64") }
            try await service.requireWritesTaken()
            do {
                let info = try vault.create(name: name, value: [UInt8](value), in: try context.namespaceForWrite(), at: Date().timeIntervalSince1970)
                service.logger.notice("secret created", metadata: ["name": "\(info.name)", "namespace": "\(context.namespace)", "size": "\(info.sizeBytes)"])
                return try encode(info, status: .created)
            } catch let error as PropellerError where error.code == .resourceExhausted {
                throw APIError.conflict(error.message)
            }
        }
        router.get("/secrets/{name}") { _, context in
            let name = try context.parameters.require("name")
            guard let info = try vault().list(in: try context.namespaceForWrite()).first(where: { $0.name == name }) else {
                throw APIError.notFound("no secret \(name) in namespace \(context.namespace)")
            }
            return try encode(info)
        }
        router.delete("/secrets/{name}") { _, context in
            let name = try context.parameters.require("name")
            try await service.requireWritesTaken()
            guard try vault().delete(name, in: try context.namespaceForWrite()) else { throw APIError.notFound("no secret \(name) in namespace \(context.namespace)") }
            service.logger.notice("secret removed", metadata: ["name": "\(name)", "namespace": "\(context.namespace)"])
            return Response(status: .noContent)
        }
    }

    /// Refuses a task or actor that asks for a secret its namespace does not hold (422 naming it).
    func checkSecretsExist(_ mounts: [SecretMount]?, in namespace: String) throws {
        guard let mounts, !mounts.isEmpty else { return }
        let vault = try vault()
        for name in Set(mounts.map(\.name)).sorted() where try !vault.exists(name, in: namespace) {
            let flag = namespace == Namespaces.defaultName ? "" : " --namespace \(namespace)"
            throw APIError.unprocessable("secrets: no secret \(name) in namespace \(namespace) (create it with: propeller secret create \(name)\(flag) --from-file FILE)")
        }
    }
}
