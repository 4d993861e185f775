#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerImage

/// Where images are kept and how registries are reached, as plain values: what ``ImageOptions``
/// parses, and what the quick parse of `propeller run` (``RunOptions``) fills in without
/// ArgumentParser.
package struct ImageSettings: Equatable, Sendable {
    /// `PROPELLER_DATA_DIR`, else `/var/lib/propeller`.
    package static var defaultDataDirectory: String { getenv("PROPELLER_DATA_DIR").map { String(cString: $0) } ?? "/var/lib/propeller" }

    package var dataDir = ImageSettings.defaultDataDirectory
    package var registryUsername: String?
    package var registryPasswordStdin = false
    package var registryPasswordFile: String?
    package var registry: String?
    package var pull: PullPolicy = .missing
    package var insecureRegistry: [String] = []
    /// No pull progress on stderr.
    package var quiet = false

    package init() {}

    package init(dataDir: String, registryUsername: String?, registryPasswordStdin: Bool, registryPasswordFile: String?, registry: String?,
                 pull: PullPolicy, insecureRegistry: [String], quiet: Bool = false) {
        self.quiet = quiet
        self.dataDir = dataDir
        self.registryUsername = registryUsername
        self.registryPasswordStdin = registryPasswordStdin
        self.registryPasswordFile = registryPasswordFile
        self.registry = registry
        self.pull = pull
        self.insecureRegistry = insecureRegistry
    }

    package func store() throws -> ImageStore { try ImageStore(dataDirectory: absolutePath(dataDir)) }

    /// The rootfs and run defaults of `reference`: a stored, unpacked image read the quick way
    /// when the pull policy allows (see ``ImageStore/storedRunnable(named:)``), else obtained
    /// (pulled or imported) and unpacked.
    package func runnable(_ reference: String, store: ImageStore) throws -> StoredRunnable {
        if pull != .always, !reference.hasPrefix("oci:"), let ref = try? ImageReference(parsing: reference),
           let stored = store.storedRunnable(named: ref.description) {
            return stored
        }
        let image = try obtain(reference, store: store)
        return StoredRunnable(manifestDigest: image.manifestDigest, rootfs: try store.rootfs(for: image), defaults: image.config.runDefaults)
    }

    /// Imports (`oci:DIR[:TAG]`) or pulls (a registry reference; unpacked as it downloads) an
    /// image and records its name.
    package func obtain(_ reference: String, store: ImageStore) throws -> Image {
        let image: Image
        let name: String
        if reference.hasPrefix("oci:") {
            var layout = String(reference.dropFirst(4))
            var tag = "latest"
            if let colon = layout.lastIndex(of: ":"), !layout[colon...].contains("/") {
                tag = String(layout[layout.index(after: colon)...])
                layout = String(layout[..<colon])
            }
            image = try store.importLayout(directory: absolutePath(layout), tag: tag)
            name = "oci:" + absolutePath(layout) + ":" + tag
        } else {
            let ref = try ImageReference(parsing: reference)
            name = ref.description
            let stored = try store.namedImages().first { $0.name == name }.flatMap { try? store.image(manifest: $0.digest) }
            switch (pull, stored) {
            case (.never, nil):
                throw PropellerError(.notFound, "\(name) is not stored here and --pull never was given")
            case (.missing, let image?), (.never, let image?):
                return image
            default:
                image = try store.pullAndUnpack(ref, client: try registryClient(for: ref), progress: quiet ? nil : PullProgressDisplay().progress(for: name))
            }
        }
        try store.tag(image, as: name)
        return image
    }

    /// Credentials from flags, then upstream's environment names, then ~/.docker/config.json.
    ///
    /// Explicit credentials (flags, PROXY_REGISTRY_USERNAME/PASSWORD, PROXY_REGISTRY_TOKEN) are
    /// bound to one registry, as config.json's are per host: `--registry`/PROXY_REGISTRY_URL,
    /// else `reference`'s registry when the caller named the image itself (`run`, `image pull`).
    /// A daemon that pulls what API clients name (proxy, proplet) passes no reference, and must
    /// be told the registry: otherwise any client could send its credentials to a host of its
    /// choosing.
    package func registryClient(for reference: ImageReference? = nil) throws -> RegistryClient {
        let env = Environment.current
        var password = env["PROXY_REGISTRY_PASSWORD"]
        if registryPasswordStdin {
            var line = [UInt8]()
            var byte: UInt8 = 0
            while read(0, &byte, 1) == 1 && byte != UInt8(ascii: "\n") { line.append(byte) }
            password = String(decoding: line, as: UTF8.self)
        }
        if let registryPasswordFile {
            let fd = open(absolutePath(registryPasswordFile), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw PropellerError(.notFound, "registry password file \(registryPasswordFile): cannot open") }
            defer { close(fd) }
            var bytes = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &bytes, bytes.count)
            guard n >= 0 else { throw PropellerError(.systemCall, "registry password file \(registryPasswordFile): cannot read") }
            password = String(decoding: bytes[0..<n], as: UTF8.self).trimmingWhitespace()
        }
        let username = registryUsername ?? env["PROXY_REGISTRY_USERNAME"]
        let explicit = username.flatMap { u in password.map { RegistryCredentials(username: u, password: $0) } }
        if username != nil && explicit == nil {
            throw PropellerError(.invalidArgument, "a registry user name needs a password (--registry-password-stdin or PROXY_REGISTRY_PASSWORD)")
        }
        let token = env["PROXY_REGISTRY_TOKEN"]
        let named = try Self.registryHost(registry ?? env["PROXY_REGISTRY_URL"]) ?? reference?.registry
        if (explicit != nil || token != nil) && named == nil {
            throw PropellerError(.invalidArgument, "registry credentials need the registry they are for: --registry HOST[:PORT] (or PROXY_REGISTRY_URL); no other registry is sent them")
        }
        let bound = explicit != nil || token != nil ? named : nil
        return RegistryClient(credentials: { host in host == bound ? explicit ?? RegistryCredentials.fromDockerConfig(registry: host, environment: env)
                                                                   : RegistryCredentials.fromDockerConfig(registry: host, environment: env) },
                              token: token, tokenRegistry: bound, insecureRegistries: Set(insecureRegistry))
    }

    /// `host[:port]` from `https://host:port/path`, `host:port` or nil.
    static func registryHost(_ value: String?) throws -> String? {
        guard var text = value?.trimmingWhitespace(), !text.isEmpty else { return nil }
        for scheme in ["https://", "http://"] where text.hasPrefix(scheme) { text.removeFirst(scheme.count) }
        if let slash = text.firstIndex(of: "/") { text = String(text[..<slash]) }
        guard !text.isEmpty, (try? ImageReference(parsing: text + "/probe")).map({ $0.registry == text }) == true else {
            throw PropellerError(.invalidArgument, "invalid registry \"\(value ?? "")\": expected host[:port]")
        }
        return text
    }
}
