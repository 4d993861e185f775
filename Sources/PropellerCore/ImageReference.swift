/// An image reference parsed the way Docker does: `[host[:port]/]repo[:tag][@sha256:…]`.
///
/// Without a host, the registry is Docker Hub (`docker.io`) and a one-part name gets `library/`
/// (`busybox` → `docker.io/library/busybox:latest`). The first part is a host when it contains
/// a `.` or a `:`, or is `localhost`. Without a tag or digest, the tag is `latest`.
public struct ImageReference: Hashable, Sendable, CustomStringConvertible {
    /// Registry host as written (`docker.io`, `127.0.0.1:5000`).
    public var registry: String
    /// Repository path (`library/busybox`, `team/app`).
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    public init(parsing text: String) throws {
        func invalid(_ why: String) -> PropellerError {
            PropellerError(.invalidArgument, "invalid image reference \"\(text.prefix(200))\": \(why)")
        }
        // Searched as UTF-8 bytes (the separators are ASCII): see the character checks below.
        guard !text.isEmpty, text.utf8.count <= 512 else { throw invalid("empty or too long") }
        var rest = Substring(text)
        if let at = rest.utf8.firstIndex(of: UInt8(ascii: "@")) {
            digest = try Digest(validating: String(rest[rest.utf8.index(after: at)...]))
            rest = rest[..<at]
        }
        // A tag is after the last ':' that comes after the last '/'.
        if let colon = rest.utf8.lastIndex(of: UInt8(ascii: ":")), !rest.utf8[colon...].contains(UInt8(ascii: "/")) {
            let t = String(rest[rest.utf8.index(after: colon)...])
            guard Self.isValidTag(t) else { throw invalid("bad tag \"\(t)\"") }
            tag = t
            rest = rest[..<colon]
        }
        var parts = rest.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { throw invalid("empty path component") }
        if parts.count > 1, parts[0].utf8.contains(UInt8(ascii: ".")) || parts[0].utf8.contains(UInt8(ascii: ":")) || parts[0] == "localhost" {
            registry = parts.removeFirst()
            guard Self.isValidHost(registry) else { throw invalid("bad registry host \"\(registry)\"") }
        } else {
            registry = "docker.io"
        }
        if registry == "docker.io" && parts.count == 1 { parts.insert("library", at: 0) }
        for p in parts where !Self.isValidComponent(p) {
            throw invalid("\"\(p)\" is not a valid repository component (lowercase letters, digits and . _ -)")
        }
        repository = parts.joined(separator: "/")
        if tag == nil && digest == nil { tag = "latest" }
    }

    /// The host to talk to (Docker Hub's API lives at registry-1.docker.io).
    public var apiHost: String { registry == "docker.io" ? "registry-1.docker.io" : registry }

    /// The tag or digest to ask the registry for (the digest wins).
    public var manifestReference: String { digest?.description ?? tag ?? "latest" }

    /// Loopback registries are spoken to over plain HTTP, as Docker does.
    public var isLoopback: Bool { Self.isLoopbackHost(registry) }

    /// Whether `hostAndPort` (`127.0.0.1:5000`, `[::1]:5000`, `localhost`) names this machine:
    /// `localhost`, `::1` or an IPv4 literal in 127.0.0.0/8 written as four decimal numbers. A
    /// name that merely starts with "127." (`127.evil.example`) is a DNS name like any other.
    public static func isLoopbackHost(_ hostAndPort: String) -> Bool {
        let host = hostName(hostAndPort)
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return false }
        for octet in octets {
            guard !octet.isEmpty, octet.utf8.count <= 3, octet.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let v = Int(octet), v <= 255 else { return false }
        }
        return octets[0] == "127"
    }

    /// The host of `host[:port]` or `[ipv6][:port]`, without the port and brackets.
    public static func hostName(_ hostAndPort: String) -> String {
        hostAndPort.hasPrefix("[") ? String(hostAndPort.prefix { $0 != "]" }.dropFirst()) : String(hostAndPort.prefix { $0 != ":" })
    }

    public var description: String {
        var s = registry + "/" + repository
        if let tag { s += ":" + tag }
        if let digest { s += "@" + digest.description }
        return s
    }

    // The checks work on UTF-8 bytes: every valid character is ASCII, and Character's Unicode
    // properties (isNumber, isLetter) would accept non-ASCII digits and letters, and cost a
    // first touch of the Unicode tables per process (~0.2 ms of a warm `propeller run`).

    static func isValidComponent(_ s: String) -> Bool {
        let bytes = s.utf8
        guard let first = bytes.first, let last = bytes.last, first.isLowercaseAlnum, last.isLowercaseAlnum else { return false }
        var previousSeparator = false
        for b in bytes {
            if b.isLowercaseAlnum {
                previousSeparator = false
            } else if b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") {
                // Docker allows "__" and runs of "-"; a lone "." between alphanumerics.
                if previousSeparator && b == UInt8(ascii: ".") { return false }
                previousSeparator = true
            } else {
                return false
            }
        }
        return true
    }

    static func isValidTag(_ s: String) -> Bool {
        let bytes = s.utf8
        guard let first = bytes.first, bytes.count <= 128, first.isASCIIAlnum || first == UInt8(ascii: "_") else { return false }
        return bytes.allSatisfy { $0.isASCIIAlnum || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// `name[:port]` or `[ipv6][:port]`.
    static func isValidHost(_ s: String) -> Bool {
        var host = Substring(s).utf8
        var port: Substring.UTF8View?
        if host.first == UInt8(ascii: "[") {
            guard let close = host.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.first == UInt8(ascii: ":") else { return false }
                port = after.dropFirst()
            }
            host = host[host.index(after: host.startIndex)..<close]
            guard host.allSatisfy({ $0.isASCIIHexDigit || $0 == UInt8(ascii: ":") }) else { return false }
        } else {
            let parts = host.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return false }
            host = parts[0]
            if parts.count == 2 { port = parts[1] }
            guard !host.isEmpty, host.allSatisfy({ $0.isASCIIAlnum || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) else { return false }
        }
        if let port { return !port.isEmpty && port.count <= 5 && port.allSatisfy(\.isASCIIDigit) }
        return true
    }
}

extension UInt8 {
    fileprivate var isASCIIDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    fileprivate var isASCIILowercase: Bool { self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z") }
    fileprivate var isASCIIAlnum: Bool { isASCIIDigit || isASCIILowercase || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z")) }
    fileprivate var isASCIIHexDigit: Bool {
        isASCIIDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
    fileprivate var isLowercaseAlnum: Bool { isASCIIDigit || isASCIILowercase }
}
