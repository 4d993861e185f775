/// `--artifact URL[=DEST][#sha256=HEX]` (Nomad's `artifact`): a file the proplet fetches before
/// the task starts, over HTTPS (or plain HTTP from the loopback), checked against its digest
/// when one is given, and mounted into the task at DEST (`/local/NAME` by default). An archive
/// (`.tar`, `.tar.gz`, `.tgz`, `.tar.zst`, `.tar.xz`) is unpacked into DEST as a directory, with
/// the safety of an image layer.
public struct ArtifactSpec: Codable, Sendable, Hashable {
    public var url: String
    public var destination: String
    /// Lowercase hex.
    public var sha256: String?

    public init(url: String, destination: String? = nil, sha256: String? = nil) throws {
        self.url = url
        self.sha256 = sha256?.lowercased()
        self.destination = destination ?? "/local/" + (Self.fileName(url) ?? "artifact")
        try check()
    }

    /// Parses `URL[=DEST][#sha256=HEX]`; DEST starts with `/`, so a `=` in the URL's query is
    /// not taken for it.
    public init(parsing text: String) throws {
        var body = Substring(text)
        var digest: String?
        if let hash = Self.lastRange(of: "#sha256=", in: body) {
            digest = String(body[hash.upperBound...])
            body = body[..<hash.lowerBound]
        }
        var destination: String?
        if let eq = Self.lastRange(of: "=/", in: body) {
            destination = String(body[body.index(after: eq.lowerBound)...])
            body = body[..<eq.lowerBound]
        }
        try self.init(url: String(body), destination: destination, sha256: digest)
    }

    /// The URL's scheme is https, or http to a loopback host; the digest is 64 hex digits; the
    /// destination is a mount target.
    public func check() throws {
        guard let host = Self.host(url) else { throw PropellerError(.invalidArgument, "artifact \(url): expected an https:// URL") }
        let loopback = host == "localhost" || host.hasPrefix("127.") || host == "[::1]"
        guard url.hasPrefix("https://") || (url.hasPrefix("http://") && loopback) else {
            throw PropellerError(.invalidArgument, "artifact \(url): only https:// (or http:// on the loopback) is fetched")
        }
        if let sha256 {
            guard sha256.count == 64, sha256.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
                throw PropellerError(.invalidArgument, "artifact \(url): sha256 must be 64 hex digits")
            }
        }
        _ = try MountTarget.check(destination, what: "artifact \(url)")
    }

    /// Whether it is unpacked (by its file name).
    public var isArchive: Bool {
        let name = (Self.fileName(url) ?? "").lowercased()
        return [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2"].contains { name.hasSuffix($0) }
    }

    /// The last place `needle` occurs in `text`.
    static func lastRange(of needle: String, in text: Substring) -> Range<Substring.Index>? {
        let n = needle.count
        var i = text.endIndex
        while let start = text.index(i, offsetBy: -n, limitedBy: text.startIndex) {
            if text[start...].hasPrefix(needle) { return start..<text.index(start, offsetBy: n) }
            guard start > text.startIndex else { return nil }
            i = text.index(before: i)
        }
        return nil
    }

    static func host(_ url: String) -> String? {
        guard let scheme = Substring(url).firstRange(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostPort = authority.split(separator: "@").last.map(String.init) ?? ""
        if hostPort.hasPrefix("[") { return hostPort.split(separator: "]").first.map { $0 + "]" } }
        let host = hostPort.split(separator: ":").first.map(String.init) ?? ""
        return host.isEmpty ? nil : host
    }

    static func fileName(_ url: String) -> String? {
        guard let scheme = Substring(url).firstRange(of: "://") else { return nil }
        let path = url[scheme.upperBound...].prefix { $0 != "?" && $0 != "#" }
        let last = path.split(separator: "/").dropFirst().last.map(String.init)
        return last.flatMap { VolumeName.isValid($0) ? $0 : nil }
    }
}
