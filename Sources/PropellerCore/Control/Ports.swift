/// `--publish HOSTPORT:PORT[/tcp|udp]`: a port of a task on a bridge network reached at a port
/// of its proplet's host (CNI's `portmap`). Host port 0 (`--publish :PORT`) lets the manager
/// pick a free one when it places the task.
public struct PortMapping: Codable, Sendable, Hashable, CustomStringConvertible {
    public var hostPort: UInt16
    public var containerPort: UInt16
    /// `tcp` or `udp`.
    public var proto: String

    public init(hostPort: UInt16, containerPort: UInt16, proto: String = "tcp") {
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.proto = proto
    }

    /// Parses `HOSTPORT:PORT[/tcp|udp]` or `:PORT[/…]`.
    public init(parsing text: String) throws {
        func refuse() -> PropellerError {
            PropellerError(.invalidArgument, "invalid port mapping \"\(text)\": expected HOSTPORT:PORT[/tcp|udp], or :PORT for a host port picked for it")
        }
        var body = Substring(text)
        var proto = "tcp"
        if let slash = body.lastIndex(of: "/") {
            proto = String(body[body.index(after: slash)...])
            body = body[..<slash]
        }
        let parts = body.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let container = UInt16(parts[1]), container > 0 else { throw refuse() }
        let host: UInt16
        if parts[0].isEmpty {
            host = 0
        } else {
            guard let h = UInt16(parts[0]), h > 0 else { throw refuse() }
            host = h
        }
        self.init(hostPort: host, containerPort: container, proto: proto)
        try check()
    }

    /// The protocol is tcp or udp and the container's port is not 0.
    public func check() throws {
        guard proto == "tcp" || proto == "udp" else { throw PropellerError(.invalidArgument, "port mapping \(self): the protocol must be tcp or udp") }
        guard containerPort > 0 else { throw PropellerError(.invalidArgument, "port mapping \(self): the container's port must be 1 to 65535") }
    }

    /// The host side as one number, for the scheduler's accounting of used ports.
    public var hostKey: UInt32 { (proto == "udp" ? 1 << 16 : 0) | UInt32(hostPort) }

    public var description: String { "\(hostPort == 0 ? "" : String(hostPort)):\(containerPort)/\(proto)" }
}

/// The networks a task may ask for: `none` and `host` everywhere, `bridge` on proplets with the
/// CNI plugins, and names of networks a proplet's operator defined (CNI configuration lists).
public enum NetworkName {
    public static let builtIn = ["none", "host"]

    /// Whether the network is one CNI gives (`bridge` or an operator's).
    public static func isCNI(_ name: String) -> Bool { !builtIn.contains(name) }

    public static func check(_ name: String) throws -> String {
        guard builtIn.contains(name) || VolumeName.isValid(name) else {
            throw PropellerError(.invalidArgument, "invalid network \"\(name)\": none, host, bridge, or the name of a network a proplet offers")
        }
        return name
    }
}
