import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PropellerCore
import PropellerRunCLI
import PropellerImage
import PropellerManager
import PropellerProplet

/// `propeller proplet`: the agent (default), or `list|get|delete` against the manager.
struct PropletCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proplet",
        abstract: "Run the proplet agent on this machine (as root), or list proplets.",
        subcommands: [PropletAgentCommand.self, PropletListCommand.self, PropletGetCommand.self, PropletStatsCommand.self, PropletDrainCommand.self, PropletEligibilityCommand.self,
                      PropletDeleteCommand.self, PropletAddCommand.self, PropletRevokeCommand.self, PropletIdentitiesCommand.self],
        defaultSubcommand: PropletAgentCommand.self
    )
}

struct PropletAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the proplet agent (the default of `propeller proplet`).",
        discussion: """
        The proplet announces itself to the manager, heartbeats its capacity and what it runs, \
        and runs the tasks placed on it in containers (namespaces, cgroup limits from the task's \
        resources, seccomp, trimmed capabilities). Images come through `propeller proxy` (default) or \
        straight from their registry (--image-source direct), and are unpacked once under DATA_DIR. On SIGTERM it stops accepting \
        tasks, lets running ones finish for --drain-timeout, stops the rest and reports them.
        """
    )

    @OptionGroup var daemon: DaemonOptions
    @OptionGroup var images: ImageOptions

    @Option(help: ArgumentHelp("Proplet id (default: one made on first start and kept in DATA_DIR/proplet/id).", valueName: "id"))
    var id: String?

    @Option(help: ArgumentHelp("A name for people (default: the host name).", valueName: "name"))
    var name: String?

    @Option(help: ArgumentHelp("CPUs offered to tasks (default: all cores).", valueName: "n"))
    var cpus: Double?

    @Option(help: ArgumentHelp("Memory offered to tasks (default: all of it).", valueName: "size"))
    var memory: String?

    @Option(name: .customLong("max-tasks"), help: ArgumentHelp("Tasks at once (default 32).", valueName: "n"))
    var maxTasks: UInt64?

    @Option(help: ArgumentHelp("Label for placement constraints (repeatable).", valueName: "key=value"))
    var label: [String] = []

    @Option(name: .customLong("namespace"), help: ArgumentHelp("Take only this namespace's tasks and actor workers (repeatable; default: every namespace's).", valueName: "name"))
    var namespace: [String] = []

    @Option(name: .customLong("host-volume"), help: ArgumentHelp("A host directory offered to tasks by name, read-only with :ro (repeatable); a task asks for it with --volume NAME:/PATH[:ro].", valueName: "name=/path[:ro]"))
    var hostVolume: [String] = []

    @Option(name: .customLong("cni-plugin-dir"), help: ArgumentHelp("Where the CNI plugins are, ':'-separated (default /usr/lib/cni:/opt/cni/bin).", valueName: "dirs"))
    var cniPluginDir: String = "/usr/lib/cni:/opt/cni/bin"

    @Option(name: .customLong("cni-dir"), help: ArgumentHelp("CNI configuration lists (*.conflist) offered to tasks by their names, beside the built-in bridge.", valueName: "dir"))
    var cniDir: String?

    @Option(name: .customLong("bridge-name"), help: ArgumentHelp("The Linux bridge of --network bridge (default propeller0).", valueName: "name"))
    var bridgeName: String = "propeller0"

    @Option(name: .customLong("bridge-subnet"), help: ArgumentHelp("Addresses of tasks on the bridge (default 10.209.0.0/16).", valueName: "cidr"))
    var bridgeSubnet: String = "10.209.0.0/16"

    @Option(name: .customLong("output-limit"), help: ArgumentHelp("The most a task's --output directory may hold to be kept (default 1G).", valueName: "size"))
    var outputLimit: String = "1G"

    @Option(name: .customLong("output-ttl"), help: ArgumentHelp("How long a task's outputs are kept after it ends (default 24h).", valueName: "duration"))
    var outputTTL: String = "24h"

    @Option(name: .customLong("image-source"), help: ArgumentHelp("Where images come from: proxy (`propeller proxy` over MQTT, chunked and verified; default) or direct (the registry itself, with this proplet's credentials).", valueName: "proxy|direct"))
    var imageSource: String = Environment.current["PROPLET_IMAGE_SOURCE"] ?? "proxy"

    @Option(name: .customLong("rootfs-mode"), help: ArgumentHelp("How a task gets its root: overlay (an overlayfs on the unpacked image; default where the kernel has it) or copy (a copy of the image per run, for a data directory overlayfs cannot use, such as one on overlayfs itself).", valueName: "overlay|copy"))
    var rootfsMode: String = Environment.current["PROPLET_ROOTFS_MODE"] ?? "overlay"

    @Option(name: .customLong("drain-timeout"), help: ArgumentHelp("On SIGTERM, how long running tasks may go on before they are stopped (default 30s).", valueName: "duration"))
    var drainTimeout: String = "30s"

    @Option(name: .customLong("scratch-size"), help: ArgumentHelp("Size of the tmpfs (DATA/scratch) that actor executions run from; 0: from the data directory's disk (default 1G).", valueName: "size"))
    var scratchSize: String = "1G"

    @Option(name: .customLong("liveliness-interval"), help: ArgumentHelp("Heartbeat interval (env PROPLET_LIVELINESS_INTERVAL, default 5s).", valueName: "duration"))
    var livelinessInterval: String?

    @Option(name: .customLong("stats-interval"), help: ArgumentHelp("How often running tasks' CPU, memory, processes and I/O are sampled and sent to the manager (`propeller task stats`); 0: never (default 1s).", valueName: "duration"))
    var statsInterval: String = "1s"

    @Option(help: ArgumentHelp("Serve /health and /metrics (Prometheus) on HOST:PORT (default: not at all).", valueName: "host:port"))
    var http: String?

    @OptionGroup var tracing: TracingOptions

    func validate() throws {
        if PropletOptions.ImageSource(rawValue: imageSource) == nil { throw ValidationError("invalid --image-source \"\(imageSource)\": expected proxy or direct") }
        if PropletOptions.RootfsMode(rawValue: rootfsMode) == nil { throw ValidationError("invalid --rootfs-mode \"\(rootfsMode)\": expected overlay or copy") }
        if let id, !Topics.isValidComponent(id) { throw ValidationError("invalid --id \"\(id)\": no '/', '+' or '#'") }
        for l in label where !l.contains("=") { throw ValidationError("invalid --label \"\(l)\": expected KEY=VALUE") }
        if let cpus, !(cpus > 0 && cpus.isFinite) { throw ValidationError("invalid --cpus: expected a positive number") }
        _ = try hostVolumes()
        guard !bridgeName.isEmpty, bridgeName.utf8.count <= 15, bridgeName.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw ValidationError("invalid --bridge-name \"\(bridgeName)\": 1 to 15 letters, digits, '-' or '_'")
        }
        let cidr = bridgeSubnet.split(separator: "/")
        guard cidr.count == 2, cidr[0].split(separator: ".").count == 4, let bits = Int(cidr[1]), (8...30).contains(bits) else {
            throw ValidationError("invalid --bridge-subnet \"\(bridgeSubnet)\": expected an IPv4 CIDR like 10.209.0.0/16")
        }
    }

    /// `--host-volume` as offers by name: each path must exist, each name appear once.
    func hostVolumes() throws -> [String: PropletVolumes.Offer] {
        var offers: [String: PropletVolumes.Offer] = [:]
        for text in hostVolume {
            let parsed: (volume: HostVolume, path: String)
            do { parsed = try HostVolume.parse(text) } catch let error as PropellerError { throw ValidationError("invalid --host-volume: \(error.message)") }
            guard access(parsed.path, F_OK) == 0 else { throw ValidationError("invalid --host-volume \"\(text)\": \(parsed.path) does not exist") }
            guard offers[parsed.volume.name] == nil else { throw ValidationError("invalid --host-volume \"\(text)\": \(parsed.volume.name) is offered twice") }
            offers[parsed.volume.name] = PropletVolumes.Offer(path: parsed.path, readOnly: parsed.volume.readOnly)
        }
        return offers
    }

    func run() async throws {
        daemon.bootstrapLogging()
        let logger = Logger(label: "propeller.proplet")
        guard geteuid() == 0 else { throw ValidationError("the proplet runs containers and must run as root") }
        let dataDir = absolutePath(images.dataDir)
        try makeDirectory(dataDir)
        let propletID = try id ?? daemon.mqttUsername ?? PropletOptions.persistentID(dataDirectory: dataDir)
        if let user = daemon.mqttUsername, user != propletID {
            // The broker's ACL names a proplet's topics by its user name: under another id every
            // publish would be dropped and the proplet would never register.
            throw ValidationError("--id \(propletID) differs from --mqtt-username \(user): a provisioned proplet's id is its broker user name")
        }
        var capacity = PropletOptions.detectedCapacity()
        if let cpus {
            guard cpus.isFinite, cpus > 0, cpus * 1000 <= Double(InputLimits.cpuMillis.upperBound) else {
                throw ValidationError("invalid --cpus \(cpus): expected a positive number of CPUs up to \(InputLimits.cpuMillis.upperBound / 1000)")
            }
            capacity.cpuMillis = UInt64((cpus * 1000).rounded())
        }
        if let memory {
            guard let size = try? ByteSize(parsing: memory) else { throw ValidationError("invalid --memory \"\(memory)\"") }
            capacity.memoryBytes = size.bytes
        }
        if let maxTasks { capacity.tasks = maxTasks }
        var hostname = [CChar](repeating: 0, count: 256)
        gethostname(&hostname, 255)
        let registryClient = try images.registryClient()
        var options = PropletOptions(id: propletID, name: name ?? String(decoding: hostname.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), capacity: capacity, dataDirectory: dataDir,
                                     mqtt: try daemon.mqttConfiguration(envName: "PROPLET_MQTT_ADDRESS", clientID: "propeller-proplet-\(propletID)"),
                                     topics: daemon.topics, registryClient: { registryClient })
        options.imageSource = PropletOptions.ImageSource(rawValue: imageSource) ?? .proxy
        options.rootfsMode = PropletOptions.RootfsMode(rawValue: rootfsMode) ?? .overlay
        options.hostVolumes = try hostVolumes()
        guard let limit = try? ByteSize(parsing: outputLimit) else { throw ValidationError("invalid --output-limit \"\(outputLimit)\"") }
        options.outputLimitBytes = limit.bytes
        do { options.outputTTL = try DurationParsing.parse(outputTTL) } catch { throw ValidationError("invalid --output-ttl \"\(outputTTL)\": \(error)") }
        var cni = CNINetworks.Configuration(stateDirectory: dataDir + "/cni")
        cni.pluginDirectories = cniPluginDir.split(separator: ":").map(String.init)
        cni.configDirectory = cniDir
        cni.bridgeName = bridgeName
        cni.bridgeSubnet = bridgeSubnet
        options.cni = cni
        options.namespaces = try namespace.map { n in
            do { return try Namespaces.check(n) } catch { throw ValidationError("--namespace: \(error)") }
        }
        options.labels = Dictionary(label.map { l in
            let eq = l.firstIndex(of: "=") ?? l.endIndex
            return (String(l[..<eq]), String(l[l.index(after: eq)...]))
        }, uniquingKeysWith: { _, b in b })
        if let interval = livelinessInterval ?? Environment.current["PROPLET_LIVELINESS_INTERVAL"] {
            do { options.heartbeatInterval = try DurationParsing.parse(interval) } catch { throw ValidationError("invalid liveliness interval \"\(interval)\": \(error)") }
        }
        do { options.drainTimeout = try DurationParsing.parse(drainTimeout) } catch { throw ValidationError("invalid --drain-timeout \"\(drainTimeout)\"") }
        if statsInterval == "0" {
            options.statsInterval = .zero
        } else {
            do { options.statsInterval = try DurationParsing.parse(statsInterval) } catch { throw ValidationError("invalid --stats-interval \"\(statsInterval)\"") }
            if options.statsInterval < .milliseconds(100) { throw ValidationError("invalid --stats-interval \"\(statsInterval)\": at least 100ms, or 0 for none") }
        }
        guard let scratch = try? ByteSize(parsing: scratchSize) else { throw ValidationError("invalid --scratch-size \"\(scratchSize)\"") }
        options.scratchBytes = scratch.bytes
        let endpoint = try http.map(httpEndpoint)
        let (traces, tracingService) = try tracing.traces(serviceName: "propeller-proplet", logger: logger)
        options.traces = traces
        let agent = try PropletAgent(options: options, logger: logger)
        let task = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await agent.run() }
                if let endpoint { group.addTask { try await agent.serveHTTP(host: endpoint.host, port: endpoint.port, logger: logger) } }
                if let tracingService {
                    // The exporter's end (it may return at once where nothing is left to send) ends nothing else.
                    group.addTask {
                        try? await tracingService.run()
                        while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
        let sources = onTermination { sig in
            logger.notice("signal \(sig): draining")
            Task {
                await agent.shutdown()
                task.cancel()
            }
        }
        defer { sources.forEach { $0.cancel() } }
        do {
            try await task.value
        } catch is CancellationError {
        }
    }
}
