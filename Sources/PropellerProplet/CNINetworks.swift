#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PropellerCore

/// Networks for tasks from the CNI reference plugins, called as the CNI specification (1.0)
/// says: each plugin of a network's configuration list executed in turn with `CNI_COMMAND`,
/// `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and `CNI_PATH` in its environment and its
/// configuration (with the previous plugin's result) on stdin; `DEL` in reverse order with the
/// result `ADD` gave. No netlink or iptables code of our own.
///
/// `bridge` is built in: a veth into a bridge on this host with an address from `host-local`,
/// outbound masquerade, published ports through `portmap`, and `firewall` to let its traffic
/// through a host whose FORWARD policy drops. Operators add networks as configuration lists
/// (`*.conflist`) in `--cni-dir`, each offered under its `name`.
///
/// Each attachment's result is kept in `<state>/results` and its network namespace pinned by a
/// bind mount in `<state>/netns` until its `DEL` succeeds, so that a proplet that was killed
/// tears everything down (veth, iptables rules, address leases) at its next start: the plugins
/// need the namespace to find what they made in it.
public final class CNINetworks: Sendable {
    public struct Configuration: Sendable {
        /// Where the plugin executables are, searched in order.
        public var pluginDirectories = ["/usr/lib/cni", "/opt/cni/bin"]
        /// The built-in bridge network's Linux bridge and subnet.
        public var bridgeName = "propeller0"
        public var bridgeSubnet = "10.209.0.0/16"
        /// Operators' configuration lists, offered by their names (nil: none).
        public var configDirectory: String?
        /// Address leases and kept results.
        public var stateDirectory: String

        public init(stateDirectory: String) {
            self.stateDirectory = stateDirectory
        }
    }

    /// What an `ADD` gave: the task's address, for its /etc/hosts.
    public struct Attachment: Sendable {
        public var network: String
        public var address: String?
    }

    let configuration: Configuration
    /// Network name → its configuration list (a JSON object).
    let lists: [String: [String: any Sendable]]
    let logger: Logger
    static let interface = "eth0"

    public init(_ configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        var lists: [String: [String: any Sendable]] = [:]
        let required = ["bridge", "host-local", "portmap", "firewall", "loopback"]
        if required.allSatisfy({ name in configuration.pluginDirectories.contains { FileManager.default.isExecutableFile(atPath: $0 + "/" + name) } }) {
            lists["bridge"] = Self.bridgeList(configuration)
        }
        if let dir = configuration.configDirectory {
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where file.hasSuffix(".conflist") {
                let path = dir + "/" + file
                guard let data = FileManager.default.contents(atPath: path),
                      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                      let name = object["name"] as? String, VolumeName.isValid(name), name != "none", name != "host",
                      object["plugins"] is [[String: Any]]
                else {
                    throw PropellerError(.invalidArgument, "CNI configuration list \(path): expected an object with a name (letters, digits, '_', '.', '-') and plugins")
                }
                lists[name] = Self.sendable(object)
            }
        }
        self.lists = lists
        for dir in [configuration.stateDirectory, configuration.stateDirectory + "/results", configuration.stateDirectory + "/netns"]
            where mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw PropellerError(.systemCall, "make \(dir): \(String(cString: strerror(errno)))")
        }
    }

    /// The networks this proplet offers, for its announcement.
    public var offered: [String] { lists.keys.sorted() }

    static func bridgeList(_ c: Configuration) -> [String: any Sendable] {
        let ipam: [String: any Sendable] = ["type": "host-local", "ranges": [[["subnet": c.bridgeSubnet]]], "routes": [["dst": "0.0.0.0/0"]],
                                            "dataDir": c.stateDirectory + "/ipam"]
        let plugins: [[String: any Sendable]] = [
            ["type": "bridge", "bridge": c.bridgeName, "isGateway": true, "ipMasq": true, "hairpinMode": true, "ipam": ipam],
            ["type": "portmap", "capabilities": ["portMappings": true], "snat": true],
            ["type": "firewall"],
        ]
        return ["cniVersion": "1.0.0", "name": "bridge", "plugins": plugins]
    }

    /// JSON from JSONSerialization as Sendable values.
    static func sendable(_ value: Any) -> [String: any Sendable] {
        (try? JSONSerialization.jsonObject(with: JSONSerialization.data(withJSONObject: value)) as? [String: any Sendable]) ?? [:]
    }

    // MARK: ADD and DEL

    /// Attaches the network namespace `namespace` (a descriptor) to `network`, publishing
    /// `ports`. On failure, what was added is deleted again and the error names the plugin and
    /// its message.
    public func attach(container: String, namespace: Int32, network: String, ports: [PortMapping]) throws -> Attachment {
        guard let list = lists[network], let all = list["plugins"] as? [[String: any Sendable]] else {
            throw PropellerError(.notFound, "this proplet offers no network \(network) (it offers: \(offered.joined(separator: ", ")))")
        }
        let version = list["cniVersion"] as? String ?? "1.0.0"
        let plugins = Self.needed(all, ports: ports)
        var result: [String: any Sendable]?
        // Kept before the first plugin runs: a crash in between is cleaned up at the next start.
        try keep(Kept(network: network, container: container, ports: ports, result: nil))
        let netns: String
        do {
            netns = try pin(namespace, container: container)
        } catch {
            unlink(keptPath(network: network, container: container))
            throw error
        }
        for plugin in plugins {
            do {
                result = try run("ADD", plugin: plugin, name: network, version: version, container: container, netns: netns, ports: ports, previous: result)
            } catch {
                detach(container: container, netns: netns, network: network, ports: ports, result: result)
                unpin(container)
                throw error
            }
            try keep(Kept(network: network, container: container, ports: ports, result: result.flatMap { try? JSONSerialization.data(withJSONObject: $0) }))
        }
        let address = ((result?["ips"] as? [[String: Any]])?.first?["address"] as? String).map { String($0.split(separator: "/")[0]) }
        return Attachment(network: network, address: address)
    }

    /// Detaches `container` from `network`: each plugin's DEL, last first, in its pinned
    /// namespace (if it is still there). Errors are logged; the kept result and the pin go once
    /// all pass.
    public func detach(container: String, network: String) {
        let kept = readKept(network: network, container: container)
        let pinned = namespacePath(container)
        var st = stat()
        detach(container: container, netns: stat(pinned, &st) == 0 ? pinned : nil, network: network, ports: kept?.ports ?? [],
               result: kept?.result.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: any Sendable] })
        unpin(container)
    }

    private func namespacePath(_ container: String) -> String { configuration.stateDirectory + "/netns/" + container }

    /// Bind-mounts the namespace on a file of its own: it outlives this process, for DEL.
    private func pin(_ namespace: Int32, container: String) throws -> String {
        let path = namespacePath(container)
        let fd = Glibc.open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PropellerError(.systemCall, "pin the network namespace at \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        guard mount("/proc/self/fd/\(namespace)", path, nil, UInt(MS_BIND), nil) == 0 else {
            let error = PropellerError(.systemCall, "pin the network namespace at \(path): \(String(cString: strerror(errno)))")
            unlink(path)
            throw error
        }
        return path
    }

    private func unpin(_ container: String) {
        let path = namespacePath(container)
        _ = umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }

    private func detach(container: String, netns: String?, network: String, ports: [PortMapping], result: [String: any Sendable]?) {
        guard let list = lists[network], let plugins = list["plugins"] as? [[String: any Sendable]] else {
            logger.error("cannot detach from a network this proplet no longer offers", metadata: ["network": "\(network)", "container": "\(container)"])
            return
        }
        let version = list["cniVersion"] as? String ?? "1.0.0"
        var failed = false
        for plugin in Self.needed(plugins, ports: ports).reversed() {
            do {
                _ = try run("DEL", plugin: plugin, name: network, version: version, container: container, netns: netns ?? "", ports: ports, previous: result)
            } catch {
                failed = true
                logger.error("CNI DEL failed", metadata: ["network": "\(network)", "container": "\(container)", "error": "\(error)"])
            }
        }
        if !failed { unlink(keptPath(network: network, container: container)) }
    }

    /// The plugins an attachment runs: `portmap` only when it publishes ports (its ADD does
    /// nothing without them, its DEL still walks the host's NAT rules: 60 ms here).
    static func needed(_ plugins: [[String: any Sendable]], ports: [PortMapping]) -> [[String: any Sendable]] {
        ports.isEmpty ? plugins.filter { $0["type"] as? String != "portmap" } : plugins
    }

    /// At start: every attachment a previous run left (it was killed, or a DEL failed) is
    /// deleted; their namespaces are gone with their containers.
    public func cleanUpLeftovers() {
        let dir = configuration.stateDirectory + "/results"
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where file.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: dir + "/" + file), let kept = try? JSONDecoder().decode(Kept.self, from: data) else {
                unlink(dir + "/" + file)
                continue
            }
            detach(container: kept.container, network: kept.network)
            logger.notice("detached a container a previous run left on a network", metadata: ["network": "\(kept.network)", "container": "\(kept.container)"])
        }
    }

    /// Runs one plugin; its result (for ADD), or an error with the plugin's own message.
    private func run(_ command: String, plugin: [String: any Sendable], name: String, version: String, container: String, netns: String,
                     ports: [PortMapping], previous: [String: any Sendable]?) throws -> [String: any Sendable]? {
        guard let type = plugin["type"] as? String, !type.contains("/"),
              let executable = configuration.pluginDirectories.map({ $0 + "/" + type }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw PropellerError(.notFound, "CNI plugin \(plugin["type"] ?? "?") of network \(name): not in \(configuration.pluginDirectories.joined(separator: ":"))")
        }
        var config = plugin
        config["cniVersion"] = version
        config["name"] = name
        if let previous { config["prevResult"] = previous }
        if let capabilities = plugin["capabilities"] as? [String: Any], capabilities["portMappings"] as? Bool == true, !ports.isEmpty {
            let mappings: [[String: any Sendable]] = ports.map { ["hostPort": Int($0.hostPort), "containerPort": Int($0.containerPort), "protocol": $0.proto] }
            config["runtimeConfig"] = ["portMappings": mappings] as [String: any Sendable]
        }
        let input = try JSONSerialization.data(withJSONObject: config)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.environment = ["CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": Self.interface,
                               "CNI_PATH": configuration.pluginDirectories.joined(separator: ":"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        let started = ContinuousClock.now
        defer { logger.debug("CNI plugin ran", metadata: ["command": "\(command)", "plugin": "\(type)", "network": "\(name)", "took": "\(ContinuousClock.now - started)"]) }
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try? stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let error = (try? JSONSerialization.jsonObject(with: output) as? [String: Any]) ?? [:]
            let message = [error["msg"] as? String, error["details"] as? String].compactMap { $0 }.joined(separator: ": ")
            throw PropellerError(.systemCall, "CNI \(command) of network \(name), plugin \(type): \(message.isEmpty ? String(decoding: errors.prefix(500), as: UTF8.self) : message)")
        }
        guard command == "ADD" else { return nil }
        return (try? JSONSerialization.jsonObject(with: output) as? [String: any Sendable]) ?? previous
    }

    // MARK: Kept results

    struct Kept: Codable {
        var network: String
        var container: String
        var ports: [PortMapping]
        /// The last ADD result (JSON), for DEL's prevResult.
        var result: Data?
    }

    private func keptPath(network: String, container: String) -> String {
        configuration.stateDirectory + "/results/\(network)-\(container).json"
    }

    private func keep(_ kept: Kept) throws {
        let path = keptPath(network: kept.network, container: kept.container)
        try JSONEncoder().encode(kept).write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else { throw PropellerError(.systemCall, "keep the CNI result \(path): \(String(cString: strerror(errno)))") }
    }

    private func readKept(network: String, container: String) -> Kept? {
        FileManager.default.contents(atPath: keptPath(network: network, container: container)).flatMap { try? JSONDecoder().decode(Kept.self, from: $0) }
    }

    // MARK: Files for the task

    /// `/etc/resolv.conf` for a task on a bridge: the host's name servers, or, where the host
    /// asks a resolver on its own loopback (systemd-resolved), the ones that resolver uses.
    public static func resolvConf() -> String {
        func servers(_ path: String) -> [String]? {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") && !$0.isEmpty }
        }
        let isLoopback = { (line: String) in
            let parts = line.split(separator: " ")
            return parts.first == "nameserver" && parts.count > 1 && (parts[1].hasPrefix("127.") || parts[1] == "::1")
        }
        var lines = servers("/etc/resolv.conf") ?? []
        if lines.contains(where: isLoopback), let upstream = servers("/run/systemd/resolve/resolv.conf") { lines = upstream }
        return lines.filter { !isLoopback($0) }.joined(separator: "\n") + "\n"
    }

    /// `/etc/hosts` for a task: localhost and its own name at its address.
    public static func hosts(hostname: String, address: String?) -> String {
        var text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        if let address { text += "\(address)\t\(hostname)\n" }
        return text
    }
}
