import Foundation
import Hummingbird
import PropellerCore

/// `/tokens`: API tokens made, listed and revoked through the API (by a holder of a token).
extension ManagerAPI {
    struct TokenCreate: Decodable {
        var name: String?
    }

    /// POST /tokens answers the secret once, beside the record.
    struct CreatedToken: Encodable {
        var token: APIToken
        var secret: String

        enum Keys: String, CodingKey { case token }
        func encode(to encoder: any Encoder) throws {
            try token.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(secret, forKey: .token)
        }
    }

    struct TokenList: Encodable {
        var tokens: [APIToken]
    }

    func addTokenRoutes(_ router: Router<BasicRequestContext>) {
        router.get("/tokens") { _, _ in
            guard let tokens else { throw APIError.notFound("tokens: the API runs without authentication (--insecure-no-auth)") }
            return try encode(TokenList(tokens: try tokens.list()))
        }
        router.post("/tokens") { request, _ in
            guard let tokens else { throw APIError.notFound("tokens: the API runs without authentication (--insecure-no-auth)") }
            let bytes = try await collect(request)
            let object: Any
            do {
                object = try JSONSerialization.jsonObject(with: Data(bytes.isEmpty ? Array("{}".utf8) : bytes), options: [.fragmentsAllowed])
            } catch {
                throw APIError.badRequest("malformed JSON: \(TaskRequest.parserMessage(error))")
            }
            guard let dict = object as? [String: Any] else { throw APIError.badRequest("expected a JSON object") }
            try TaskRequest.rejectUnknown(dict, allowed: ["name"], path: "")
            if dict["name"] != nil && !(dict["name"] is String) { throw APIError.badRequest("invalid field name: expected a string") }
            let name = (dict["name"] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            guard !name.isEmpty, name.count <= 100 else { throw APIError.unprocessable("name: required, 1 to 100 characters") }
            let (token, secret) = try tokens.create(name: name)
            service.logger.notice("API token created", metadata: ["id": "\(token.id)", "name": "\(name)"])
            return try encode(CreatedToken(token: token, secret: secret), status: .created)
        }
        router.delete("/tokens/{id}") { request, context in
            guard let tokens else { throw APIError.notFound("tokens: the API runs without authentication (--insecure-no-auth)") }
            let id = try context.parameters.require("id")
            // Revoking the token in use would lock its holder out mid-session (and, for the last
            // one, everyone): it takes another token.
            if let header = request.headers[.authorization], header.hasPrefix("Bearer "), tokens.authenticate(String(header.dropFirst(7))) == id {
                throw APIError.conflict("token \(id) is the one making this request: revoke it with another token")
            }
            guard let token = try tokens.revoke(id: id) else { throw APIError.notFound("no token \(id)") }
            service.logger.notice("API token revoked", metadata: ["id": "\(token.id)", "name": "\(token.name)"])
            return try encode(token)
        }
    }
}
