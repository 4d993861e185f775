/// The one error type shared by every Propeller module.
///
/// A `PropellerError` has an extensible ``Code`` (a struct, so codes can be added without breaking
/// callers), a message meant for a person, and an optional underlying cause. System-call failures
/// keep the stage that failed and the errno in the message (`pivot_root into /x: EINVAL`).
public struct PropellerError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; callers switch on it to pick an exit status or HTTP code.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case invalidArgument, notFound, unsupported, resourceExhausted, systemCall, internalError, permissionDenied, unavailable
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// Input from the user or a caller is malformed or out of range.
        public static let invalidArgument = Code(.invalidArgument)
        /// A named thing (file, image, task, user) does not exist.
        public static let notFound = Code(.notFound)
        /// The host cannot do what was asked (a cgroup controller it lacks, for instance).
        public static let unsupported = Code(.unsupported)
        /// A limit was hit.
        public static let resourceExhausted = Code(.resourceExhausted)
        /// A system call failed; the message names the stage and the errno.
        public static let systemCall = Code(.systemCall)
        /// The caller may not do this.
        public static let permissionDenied = Code(.permissionDenied)
        /// Cannot be done here now, but may be soon or elsewhere (a manager that no longer leads).
        public static let unavailable = Code(.unavailable)
        /// A bug or an unexpected state.
        public static let internalError = Code(.internalError)

        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    public let underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        if let underlying { return "\(message): \(underlying)" }
        return message
    }
}
