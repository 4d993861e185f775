import PropellerCore

/// An error the REST API shows as `{"error": "…"}` with this HTTP status.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let message: String

    public init(status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public static func badRequest(_ m: String) -> APIError { APIError(status: 400, m) }
    public static func unauthorized(_ m: String) -> APIError { APIError(status: 401, m) }
    public static func notFound(_ m: String) -> APIError { APIError(status: 404, m) }
    public static func conflict(_ m: String) -> APIError { APIError(status: 409, m) }
    public static func unprocessable(_ m: String) -> APIError { APIError(status: 422, m) }

    public var description: String { message }

    /// The status for any error a handler throws: our codes map to 4xx, the rest is a 500.
    static func from(_ error: any Error) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? PropellerError {
            switch e.code {
            case .invalidArgument: return .unprocessable(e.message)
            case .notFound: return .notFound(e.message)
            case .permissionDenied: return APIError(status: 403, e.message)
            case .unavailable: return APIError(status: 503, e.message)
            default: return APIError(status: 500, e.message)
            }
        }
        return APIError(status: 500, "internal error: \(error)")
    }
}
