import Hummingbird
import PropellerCore

/// The manager API's request context: Hummingbird's core, the peer's address (for the audit
/// log) and, once the access middleware has let the request in, who made it.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer's IP address ("127.0.0.1", no port: one client opens many connections), or ""
    /// when unknown.
    public let peer: String
    /// Set by ``AccessMiddleware``; ``Principal/anonymous`` when the API runs without tokens.
    public var principal: Principal?
    /// The namespace the request works in, set by ``AccessMiddleware``: the token's when it is
    /// bound to one, else `?namespace=` (`*`: every namespace, for lists), else the namespace of
    /// the task or actor it names, else `default`.
    public var namespace = Namespaces.defaultName

    /// The namespace to make something in (not `*`).
    func namespaceForWrite() throws -> String {
        guard namespace != "*" else { throw APIError.unprocessable("namespace: name one namespace to make something in, not *") }
        return namespace
    }

    /// The namespace to store in a spec: nil for `default` (as before namespaces).
    func storedNamespace() throws -> String? {
        let ns = try namespaceForWrite()
        return ns == Namespaces.defaultName ? nil : ns
    }

    /// The namespace a list is filtered by (nil: every namespace).
    var listNamespace: String? { namespace == "*" ? nil : namespace }

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress.map { $0.ipAddress ?? "\($0)" } ?? ""
    }
}
