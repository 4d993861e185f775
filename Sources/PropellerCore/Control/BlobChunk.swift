/// One piece of a blob as the proxy publishes it on `registry/blobs/{digest}`: a fixed binary
/// header and the raw bytes (no base64, no JSON).
///
/// Layout (big-endian): `"PBC1"` · digest hex (64 ASCII bytes) · index u32 · total u32 ·
/// blob size u64 · offset u64 · sha256 of the payload (32 bytes) · payload.
public struct BlobChunk: Sendable, Hashable {
    public static let magic: [UInt8] = Array("PBC1".utf8)
    public static let headerSize = 4 + 64 + 4 + 4 + 8 + 8 + 32

    public var digestHex: String
    public var index: UInt32
    public var total: UInt32
    public var blobSize: UInt64
    public var offset: UInt64
    public var sha256: [UInt8]
    public var payload: ArraySlice<UInt8>

    public init(digestHex: String, index: UInt32, total: UInt32, blobSize: UInt64, offset: UInt64, sha256: [UInt8], payload: ArraySlice<UInt8>) {
        self.digestHex = digestHex
        self.index = index
        self.total = total
        self.blobSize = blobSize
        self.offset = offset
        self.sha256 = sha256
        self.payload = payload
    }

    /// The header for a payload of this chunk, to be followed by the payload bytes.
    public static func header(digestHex: String, index: UInt32, total: UInt32, blobSize: UInt64, offset: UInt64, sha256: [UInt8]) -> [UInt8] {
        var out = magic
        out.reserveCapacity(headerSize)
        out += Array(digestHex.utf8.prefix(64))
        func be<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
        be(index)
        be(total)
        be(blobSize)
        be(offset)
        out += sha256.prefix(32)
        return out
    }

    /// Parses a message; nil when it is not a well-formed chunk.
    public init?(parsing bytes: [UInt8]) {
        guard bytes.count >= Self.headerSize, Array(bytes[0..<4]) == Self.magic else { return nil }
        let hex = String(decoding: bytes[4..<68], as: UTF8.self)
        guard hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        func read<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for i in 0..<MemoryLayout<T>.size { v = v << 8 | T(bytes[at + i]) }
            return v
        }
        digestHex = hex
        index = read(68, UInt32.self)
        total = read(72, UInt32.self)
        blobSize = read(76, UInt64.self)
        offset = read(84, UInt64.self)
        sha256 = Array(bytes[92..<124])
        payload = bytes[124...]
        // No addition of header fields: a forged offset near UInt64.max overflowed and trapped.
        guard total > 0, index < total, offset <= blobSize, UInt64(payload.count) <= blobSize - offset else { return nil }
    }
}

/// `registry/proplet`: what a proplet asks the proxy.
public struct RegistryRequest: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable {
        /// Resolve `image` to its manifest (answered on the proplet's response topic).
        case resolve
        /// Stream these blobs (`digests`) on their blob topics.
        case fetch
        /// Publish these chunk indexes of `digest` again.
        case resend
    }
    public var kind: Kind
    public var requestId: String
    public var propletId: String
    public var image: String?
    public var digests: [String]?
    public var digest: String?
    public var missing: [UInt32]?

    public init(kind: Kind, requestId: String, propletId: String, image: String? = nil, digests: [String]? = nil, digest: String? = nil, missing: [UInt32]? = nil) {
        self.kind = kind
        self.requestId = requestId
        self.propletId = propletId
        self.image = image
        self.digests = digests
        self.digest = digest
        self.missing = missing
    }
}

/// `registry/proplets/{id}`: the proxy's answer to one proplet.
public struct RegistryResponse: Codable, Sendable, Hashable {
    public struct Blob: Codable, Sendable, Hashable {
        public var digest: String
        public var size: Int64
        public init(digest: String, size: Int64) {
            self.digest = digest
            self.size = size
        }
    }
    public var requestId: String
    public var image: String?
    public var manifestDigest: String?
    /// The manifest's exact bytes (UTF-8 JSON), checked by the proplet against `manifest_digest`.
    public var manifest: String?
    /// Config first, then the layers.
    public var blobs: [Blob]?
    /// When set, the request failed (a blob fetch names its `digest`).
    public var error: String?
    public var digest: String?

    public init(requestId: String, image: String? = nil, manifestDigest: String? = nil, manifest: String? = nil, blobs: [Blob]? = nil,
                error: String? = nil, digest: String? = nil) {
        self.requestId = requestId
        self.image = image
        self.manifestDigest = manifestDigest
        self.manifest = manifest
        self.blobs = blobs
        self.error = error
        self.digest = digest
    }
}
