#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a task's `--output` directory held when it ended (``TaskResult/outputs``).
public struct OutputSummary: Codable, Sendable, Hashable {
    public var files: Int
    public var bytes: UInt64
    /// Kept on the proplet for `task cp`; false when it was over the proplet's limit.
    public var kept: Bool
    public var reason: String?

    public init(files: Int, bytes: UInt64, kept: Bool, reason: String? = nil) {
        self.files = files
        self.bytes = bytes
        self.kept = kept
        self.reason = reason
    }
}

/// One file of a task's outputs: its path under the output directory and its size.
public struct OutputFile: Codable, Sendable, Hashable {
    public var path: String
    public var sizeBytes: UInt64

    public init(path: String, sizeBytes: UInt64) {
        self.path = path
        self.sizeBytes = sizeBytes
    }
}

/// `control/proplet/{id}/output`: list an attempt's outputs (no path) or send one file.
public struct OutputRequest: Codable, Sendable, Hashable {
    public var requestId: String
    public var taskId: String
    public var attempt: Int
    /// Relative to the output directory; nil: the listing.
    public var path: String?

    public init(requestId: String, taskId: String, attempt: Int, path: String?) {
        self.requestId = requestId
        self.taskId = taskId
        self.attempt = attempt
        self.path = path
    }
}

/// `control/manager/{id}/outputs`: the answer to an ``OutputRequest``, in order: a listing, or
/// a file's bytes in chunks (`index` from 0, `last` on the final one), or an error.
public struct OutputReply: Codable, Sendable, Hashable, PropletMessage {
    public var requestId: String
    public var propletId: String
    public var index: Int
    public var last: Bool
    public var listing: [OutputFile]?
    /// The chunk's bytes (base64 in JSON).
    public var data: Data?
    public var error: String?

    public init(requestId: String, propletId: String, index: Int = 0, last: Bool = true, listing: [OutputFile]? = nil, data: Data? = nil, error: String? = nil) {
        self.requestId = requestId
        self.propletId = propletId
        self.index = index
        self.last = last
        self.listing = listing
        self.data = data
        self.error = error
    }
}
