import Foundation
import PostgresNIO
import PropellerCore

/// Where a PostgreSQL database is, from a `postgres://user:password@host:port/database?sslmode=…`
/// URL (libpq's form; `postgresql://` too). The password never appears in ``description``.
public struct PostgresLocation: Sendable, CustomStringConvertible {
    public enum SSLMode: String, Sendable {
        /// Plain TCP (loopback, or a network that is itself encrypted).
        case disable
        /// TLS when the server offers it.
        case prefer
        /// TLS or no connection, the certificate checked against the system's roots.
        case require
    }

    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// Shown as `application_name` in `pg_stat_activity` (which manager a session is).
    public var applicationName: String?

    /// Parses a store URL; an error names what is wrong without echoing the password.
    public init(url: String) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw PropellerError(.invalidArgument, "store URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        guard let host = components.host, !host.isEmpty else { throw PropellerError(.invalidArgument, "store URL: no host") }
        guard let user = components.user, !user.isEmpty else { throw PropellerError(.invalidArgument, "store URL: no user") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw PropellerError(.invalidArgument, "store URL: expected one database name in the path") }
        self.host = host
        port = components.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        password = components.password.map { $0.removingPercentEncoding ?? $0 }
        self.database = database
        sslMode = .prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = SSLMode(rawValue: item.value ?? "") else {
                    throw PropellerError(.invalidArgument, "store URL: sslmode must be disable, prefer or require")
                }
                sslMode = mode
            default:
                throw PropellerError(.invalidArgument, "store URL: unknown parameter \(item.name) (known: sslmode)")
            }
        }
    }

    /// `postgres://user@host:port/database`, without the password.
    public var description: String { "postgres://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)" }

    func configuration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        switch sslMode {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        if let applicationName { configuration.options.additionalStartupParameters = [("application_name", applicationName)] }
        return configuration
    }
}
