import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PropellerCore
import PropellerImage
import PropellerRuntime

/// `propeller run`: one container on this machine, no manager (like `docker run`).
package struct RunCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a new container on this machine.",
        discussion: """
        The container gets new mount, PID, UTS, IPC, network and cgroup namespaces, the given root \
        filesystem (pivot_root), a fresh /proc, a minimal /dev, a read-only /sys, Docker's default \
        capabilities minus NET_RAW, no_new_privs and a seccomp allow-list. stdout and stderr of the \
        command are the caller's own.

        Exit status: the command's exit code; 128+N when signal N killed it; 137 with a message when \
        the memory limit OOM-killed it; 124 when --timeout killed it; 125 when Propeller itself \
        failed (bad flags, setup error); 126 when the command cannot be executed; 127 when it is not \
        found.

        SIZE accepts 64M, 1.5G, 512k (powers of 1024) and plain bytes. DURATION accepts 500ms, 30s, 2m, 1h.
        """
    )

    @Option(help: ArgumentHelp("Root filesystem directory for the container.", valueName: "dir"))
    var rootfs: String?

    @Option(help: ArgumentHelp("Image to run: a registry reference (host[:port]/repo[:tag][@digest]) or oci:DIR[:TAG], an OCI image layout. Its layers are verified, unpacked once and shared read-only; each run writes to its own overlay.", valueName: "ref"))
    var image: String?

    @OptionGroup var images: ImageOptions

    @Option(help: ArgumentHelp("With --image, where the container's writes to its root filesystem go: memory (a private tmpfs, charged to the container's memory and bounded by --memory and --scratch-size, gone with the run) or disk (under --data-dir/runs, removed after the run). Default: memory.", valueName: "memory|disk"))
    var scratch: String?

    @Option(name: .customLong("scratch-size"), help: ArgumentHelp("With --scratch memory, the most the container may write to its root filesystem (default: half the RAM, as any tmpfs).", valueName: "size"))
    var scratchSize: String?

    @Option(help: ArgumentHelp("Memory limit (no swap beyond it).", valueName: "size"))
    var memory: String?

    @Option(help: ArgumentHelp("CPU limit in CPUs, e.g. 0.5 or 2.", valueName: "n"))
    var cpus: String?

    @Option(help: ArgumentHelp("Maximum number of processes and threads.", valueName: "n"))
    var pids: String?

    @Option(help: ArgumentHelp("Kill the whole container after this long (exit status 124).", valueName: "duration"))
    var timeout: String?

    @Option(name: [.short, .customLong("env")], help: ArgumentHelp("Set an environment variable (KEY=VALUE, or KEY to copy it from here).", valueName: "key=value"))
    var env: [String] = []

    @Option(name: [.short, .customLong("workdir")], help: ArgumentHelp("Working directory inside the container (created if missing; default: the image's, or /).", valueName: "dir"))
    var workdir: String?

    @Option(name: [.short, .customLong("user")], help: ArgumentHelp("User to run as: UID[:GID] or NAME[:GROUP], resolved in the rootfs.", valueName: "user"))
    var user: String?

    @Option(help: ArgumentHelp("Container hostname (default: the first 12 digits of its id).", valueName: "name"))
    var hostname: String?

    @Option(help: ArgumentHelp("none: a private network namespace with only loopback; host: the host's network.", valueName: "none|host"))
    var network: String = "none"

    @Option(name: .customLong("cap-add"), help: ArgumentHelp("Add a capability (NET_RAW, SYS_PTRACE, ALL, ...).", valueName: "cap"))
    var capAdd: [String] = []

    @Option(name: .customLong("cap-drop"), help: ArgumentHelp("Drop a capability (or ALL).", valueName: "cap"))
    var capDrop: [String] = []

    @Option(name: [.short, .customLong("volume")], help: ArgumentHelp("Bind a host directory or file into the container (repeatable): nosuid, nodev, private, read-only with :ro; the target is resolved inside the container.", valueName: "/host:/path[:ro]"))
    var volume: [String] = []

    @Option(help: ArgumentHelp("A tmpfs of the container's own, charged to its memory (repeatable).", valueName: "/path[:size=64M]"))
    var tmpfs: [String] = []

    @Flag(name: .customLong("read-only"), help: "Mount the root filesystem read-only.")
    var readOnly = false

    @Option(help: ArgumentHelp("default, unconfined, or a Docker-format JSON profile file.", valueName: "default|unconfined|file"))
    var seccomp: String = "default"

    @Option(help: ArgumentHelp("Resource limit NAME=SOFT[:HARD] (default nofile=1024:1024).", valueName: "name=soft:hard"))
    var ulimit: [String] = []

    @Option(help: ArgumentHelp("Write how the container ended (exit code, signal, OOM, timeout, CPU and memory use) to this file as JSON.", valueName: "file"))
    var report: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "warning"

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments.", valueName: "cmd"))
    var command: [String] = []

    /// The values parsed.
    package var options: RunOptions {
        var o = RunOptions()
        o.rootfs = rootfs
        o.image = image
        o.images = images.settings
        o.scratch = scratch
        o.scratchSize = scratchSize
        o.memory = memory
        o.cpus = cpus
        o.pids = pids
        o.timeout = timeout
        o.env = env
        o.workdir = workdir
        o.user = user
        o.hostname = hostname
        o.network = network
        o.capAdd = capAdd
        o.capDrop = capDrop
        o.volume = volume
        o.tmpfs = tmpfs
        o.readOnly = readOnly
        o.seccomp = seccomp
        o.ulimit = ulimit
        o.report = report
        o.logLevel = logLevel
        o.command = command.first == "--" ? Array(command.dropFirst()) : command
        return o
    }

    package func validate() throws {
        if let first = command.first, first == "--help" || first == "-h" {
            throw CleanExit.helpRequest(self)
        }
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option '\(first)'")
        }
        try options.validate()
    }

    package func run() throws { try options.run() }
}
