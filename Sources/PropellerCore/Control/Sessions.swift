#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `control/proplet/{id}/session`: the manager's side of an exec session (`propeller task exec`),
/// a process started inside a running task. The session id is the manager's; everything the
/// proplet sends back names it.
public struct SessionCommand: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable {
        /// Start the process (``command`` and the fields after it).
        case open
        /// Bytes for its stdin, numbered by ``seq`` from 0; ``eof`` closes stdin after them.
        case input
        /// The terminal's new size.
        case resize
        /// Send it ``signal``.
        case signal
        /// Kill it and forget the session.
        case close
        /// Someone still follows the session; silence for ``SessionCommand/idleLimit`` ends it.
        case keepalive
    }

    public var sessionId: String
    public var kind: Kind
    public var taskId: String
    public var attempt: Int
    public var command: [String]?
    public var environment: [String]?
    public var workingDirectory: String?
    public var tty: Bool?
    /// Without a terminal: give the process a stdin fed by ``Kind/input`` (else /dev/null).
    public var stdin: Bool?
    public var rows: Int?
    public var cols: Int?
    public var seq: Int?
    /// Bytes (base64 in JSON).
    public var data: Data?
    public var eof: Bool?
    public var signal: Int32?

    /// How long a proplet keeps a session that hears nothing from the manager (no input,
    /// resize or keepalive) before it kills the process.
    public static let idleLimit: Double = 60
    /// How often the manager says a followed session is still wanted.
    public static let keepaliveInterval: Double = 15
    /// The most bytes one input or output message carries.
    public static let chunkBytes = 32 << 10

    public init(sessionId: String, kind: Kind, taskId: String, attempt: Int) {
        self.sessionId = sessionId
        self.kind = kind
        self.taskId = taskId
        self.attempt = attempt
    }
}

/// `control/manager/{id}/sessions`: what a proplet reports about an exec session, numbered by
/// ``seq`` from 0 so the manager puts them in order and notices a gap.
public struct SessionFrame: Codable, Sendable, Hashable, PropletMessage {
    public enum Kind: String, Codable, Sendable {
        /// The process started.
        case started
        /// Bytes it wrote (``stream``: stdout or stderr; a terminal's are all stdout).
        case output
        /// It ended with ``exitCode`` (128 + N: killed by signal N). The last frame.
        case exit
        /// It could not start, or the session was lost (``error``). The last frame.
        case error
    }

    public var sessionId: String
    public var propletId: String
    public var seq: Int
    public var kind: Kind
    public var stream: LogBlock.Stream?
    public var data: Data?
    public var exitCode: Int32?
    public var error: String?

    public init(sessionId: String, propletId: String, seq: Int, kind: Kind, stream: LogBlock.Stream? = nil, data: Data? = nil,
                exitCode: Int32? = nil, error: String? = nil) {
        self.sessionId = sessionId
        self.propletId = propletId
        self.seq = seq
        self.kind = kind
        self.stream = stream
        self.data = data
        self.exitCode = exitCode
        self.error = error
    }

    /// Whether nothing follows this frame.
    public var isLast: Bool { kind == .exit || kind == .error }
}
