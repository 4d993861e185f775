import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerImage

/// When `run` and `image pull` go to the registry (Docker's and podman's pull policies).
package enum PullPolicy: String, ExpressibleByArgument, CaseIterable {
    case missing, always, never
}

/// Options shared by every command that reads images: where they are kept and how to reach
/// registries (the flags of ``ImageSettings``).
package struct ImageOptions: ParsableArguments {
    package init() {}

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Where images and runs are kept (env PROPELLER_DATA_DIR).", valueName: "dir"))
    package var dataDir: String = ImageSettings.defaultDataDirectory

    @Option(name: .customLong("registry-username"), help: ArgumentHelp("Registry user name (env PROXY_REGISTRY_USERNAME; else ~/.docker/config.json).", valueName: "name"))
    package var registryUsername: String?

    @Flag(name: .customLong("registry-password-stdin"), help: "Read the registry password from standard input (env PROXY_REGISTRY_PASSWORD otherwise).")
    package var registryPasswordStdin = false

    @Option(name: .customLong("registry-password-file"), help: ArgumentHelp("Read the registry password from this file (no flag takes the password itself: process arguments are visible to every user).", valueName: "file"))
    package var registryPasswordFile: String?

    @Option(name: .customLong("registry"), help: ArgumentHelp("The registry the explicit credentials (--registry-username, PROXY_REGISTRY_TOKEN) are for; no other registry is sent them (env PROXY_REGISTRY_URL; `propeller run` and `image pull` default to the image's own registry).", valueName: "host[:port]"))
    package var registry: String?

    @Option(help: ArgumentHelp("missing: pull only images not stored yet (default); always: resolve the tag at the registry every time; never: use only stored images.", valueName: "missing|always|never"))
    package var pull: PullPolicy = .missing

    @Option(name: .customLong("insecure-registry"), help: ArgumentHelp("Use plain HTTP for this registry host (loopback hosts always do).", valueName: "host[:port]"))
    package var insecureRegistry: [String] = []

    @Flag(name: [.short, .long], help: "Show no pull progress (a line redrawn on a terminal, a line per layer elsewhere).")
    package var quiet = false

    /// The values given, as plain values.
    package var settings: ImageSettings {
        ImageSettings(dataDir: dataDir, registryUsername: registryUsername, registryPasswordStdin: registryPasswordStdin,
                      registryPasswordFile: registryPasswordFile, registry: registry, pull: pull, insecureRegistry: insecureRegistry, quiet: quiet)
    }

    package func store() throws -> ImageStore { try settings.store() }

    package func registryClient(for reference: ImageReference? = nil) throws -> RegistryClient { try settings.registryClient(for: reference) }
}

package func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let raw = getcwd(nil, 0) else { return path }
    defer { free(raw) }
    let cwd = String(cString: raw)
    return cwd == "/" ? "/" + path : cwd + "/" + path
}
