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

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress.map { $0.ipAddress ?? "\($0)" } ?? ""
    }
}
