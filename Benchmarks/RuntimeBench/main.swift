// propeller-bench: timing helpers for scripts/bench. Not a test: it prints figures.
//
//   propeller-bench spawn --iterations N [--out FILE] -- CMD [ARG...]
//       runs CMD N times (stdout/stderr to /dev/null) and appends one wall time in ms per line
//   propeller-bench inprocess --rootfs DIR --iterations N [--out FILE]
//       starts /bin/true N times through the runtime library (as the proplet does): new
//       namespaces including network, default seccomp, cgroup with memory/cpu/pids limits
//   propeller-bench bridge --rootfs DIR --iterations N --state DIR [--bridge NAME] [--subnet CIDR] [--out FILE] [--out-teardown FILE]
//       the same with --network bridge as the proplet does it: a network namespace, the CNI
//       reference plugins' ADD (bridge, host-local, firewall), the container; then, timed apart
//       (the proplet does it after the result), their DEL
//   propeller-bench actors throughput|sync ... (see ActorLoad.swift)
//   propeller-bench summarize NAME=FILE...
//       prints median / p10 / p90 / p99 per series and the ratio of each median to the first
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PropellerCore
import PropellerImage
import PropellerProplet
import PropellerRuntime

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
}

func fail(_ message: String) -> Never {
    var text = "propeller-bench: \(message)\n"
    _ = text.withUTF8 { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

func option(_ name: String, in args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func emit(_ times: [Double], to path: String?) {
    let text = times.map { String(format3($0)) }.joined(separator: "\n") + "\n"
    if let path {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fail("cannot open \(path)") }
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    } else {
        print(text, terminator: "")
    }
}

func format3(_ v: Double) -> String {
    let scaled = Int((v * 1000).rounded())
    let frac = String(scaled % 1000)
    return "\(scaled / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}

func spawnAndWait(_ argv: [String], devnull: Int32) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, devnull, 1)
    posix_spawn_file_actions_adddup2(&actions, devnull, 2)
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
    guard rc == 0 else { fail("cannot run \(argv[0]): \(rc)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return status
}

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "spawn":
    guard let sep = args.firstIndex(of: "--"), sep + 1 < args.count else { fail("spawn: missing -- CMD") }
    let n = Int(option("--iterations", in: args) ?? "20") ?? 20
    let command = Array(args[(sep + 1)...])
    let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
    var times: [Double] = []
    for _ in 0..<n {
        let t0 = now()
        let status = spawnAndWait(command, devnull: devnull)
        times.append(now() - t0)
        if status != 0 { fail("\(command.joined(separator: " ")) exited with wait status \(status)") }
    }
    emit(times, to: option("--out", in: args))

case "inprocess":
    guard let rootfs = option("--rootfs", in: args) else { fail("inprocess: --rootfs DIR required") }
    let n = Int(option("--iterations", in: args) ?? "100") ?? 100
    do {
        // As the proplet runs it: network namespaces prepared ahead of time, off the start path.
        let runtime = try ContainerRuntime(networkNamespacePool: 4)
        runtime.networkPool?.fill()
        let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        var times: [Double] = []
        for _ in 0..<n {
            var spec = ContainerSpec(rootfs: rootfs, command: ["/bin/true"])
            spec.limits = CgroupLimits(memoryBytes: 64 << 20, cpuMillis: 1000, pids: 64)
            spec.stdio = [-1, devnull, devnull]
            let t0 = now()
            let report = try runtime.start(spec).wait()
            times.append(now() - t0)
            if report.exitCode != 0 { fail("/bin/true exited \(report.exitCode)") }
            // Let the background refill finish between starts, as it would between real tasks.
            while (runtime.networkPool?.available ?? 4) < 4 { usleep(200) }
        }
        emit(times, to: option("--out", in: args))
    } catch {
        fail("\(error)")
    }

case "bridge":
    guard let rootfs = option("--rootfs", in: args), let state = option("--state", in: args) else { fail("bridge: --rootfs DIR --state DIR required") }
    let n = Int(option("--iterations", in: args) ?? "100") ?? 100
    do {
        let runtime = try ContainerRuntime(networkNamespacePool: 0)
        var configuration = CNINetworks.Configuration(stateDirectory: state)
        configuration.bridgeName = option("--bridge", in: args) ?? "propbench0"
        configuration.bridgeSubnet = option("--subnet", in: args) ?? "10.213.0.0/24"
        var logger = Logger(label: "bench")
        logger.logLevel = getenv("PROPELLER_BENCH_DEBUG") != nil ? .debug : .warning
        let networks = try CNINetworks(configuration, logger: logger)
        guard networks.offered.contains("bridge") else { fail("bridge: no CNI plugins (containernetworking-plugins)") }
        let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        var times: [Double] = []
        var teardown: [Double] = []
        for i in 0..<n {
            let id = "bench\(getpid())x\(i)"
            let t0 = now()
            let fd = try ContainerRuntime.makeNetworkNamespace()
            _ = try networks.attach(container: id, namespace: fd, network: "bridge", ports: [])
            var spec = ContainerSpec(rootfs: rootfs, command: ["/bin/true"])
            spec.limits = CgroupLimits(memoryBytes: 64 << 20, cpuMillis: 1000, pids: 64)
            spec.stdio = [-1, devnull, devnull]
            spec.networkNamespace = fd
            let report = try runtime.start(spec).wait()
            times.append(now() - t0)
            // The teardown, which the proplet does after it has reported the result.
            let t1 = now()
            networks.detach(container: id, network: "bridge")
            close(fd)
            teardown.append(now() - t1)
            if report.exitCode != 0 { fail("/bin/true exited \(report.exitCode)") }
        }
        emit(times, to: option("--out", in: args))
        emit(teardown, to: option("--out-teardown", in: args))
    } catch {
        fail("\(error)")
    }

case "profile":
    guard let rootfs = option("--rootfs", in: args) else { fail("profile: --rootfs DIR required") }
    do { try profile(rootfs: rootfs, n: Int(option("--iterations", in: args) ?? "50") ?? 50, pool: Int(option("--pool", in: args) ?? "0") ?? 0) } catch { fail("\(error)") }

case "profile-cli":
    do { try profileOneShot() } catch { fail("\(error)") }

case "unpack":
    // propeller-bench unpack LAYER DIR: unpack one layer file, print ms and MB/s of tar stream.
    guard args.count == 3 else { fail("usage: propeller-bench unpack LAYER DIR") }
    do {
        let t0 = now()
        let summary = try LayerUnpacker().unpack(layerAt: args[1], into: args[2])
        let ms = now() - t0
        print("\(format3(ms)) ms, \(summary.entries) entries, \(summary.bytesWritten) bytes of file data")
    } catch {
        fail("\(error)")
    }

case "actors":
    ActorLoad.run(args)

case "summarize":
    var series: [(String, [Double])] = []
    for item in args.dropFirst() {
        let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2 else { fail("summarize: expected NAME=FILE, got \(item)") }
        let fd = open(kv[1], O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { fail("cannot read \(kv[1])") }
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        let n = read(fd, &bytes, bytes.count)
        close(fd)
        let values = String(decoding: bytes.prefix(max(0, n)), as: UTF8.self).split(separator: "\n").compactMap { Double($0) }.sorted()
        if !values.isEmpty { series.append((kv[0], values)) }
    }
    func pct(_ v: [Double], _ p: Double) -> Double { v[min(v.count - 1, Int(Double(v.count - 1) * p))] }
    let base = series.first.map { pct($0.1, 0.5) } ?? 1
    print("| runtime | runs | median ms | p10 ms | p90 ms | p99 ms | median vs \(series.first?.0 ?? "first") |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (name, v) in series {
        let ratio = pct(v, 0.5) / base
        print("| \(name) | \(v.count) | \(format3(pct(v, 0.5))) | \(format3(pct(v, 0.1))) | \(format3(pct(v, 0.9))) | \(format3(pct(v, 0.99))) | \(format3(ratio))x |")
    }

default:
    fail("usage: propeller-bench spawn|inprocess|summarize ...")
}
