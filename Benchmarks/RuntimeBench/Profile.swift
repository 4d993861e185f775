#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerRuntime

/// `propeller-bench profile --rootfs DIR`: where the time of one container start goes.
func profile(rootfs: String, n: Int, pool: Int) throws {
    let runtime = try ContainerRuntime(networkNamespacePool: pool)
    runtime.networkPool?.fill()
    let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
    func median(_ label: String, _ body: () throws -> Void) rethrows {
        var t: [Double] = []
        for _ in 0..<n {
            let t0 = now()
            try body()
            t.append(now() - t0)
        }
        t.sort()
        print("\(label): \(format3(t[t.count / 2])) ms")
    }
    try median("cgroup create+remove (limits)") {
        let cg = try runtime.cgroups.create(name: ContainerID().hex, limits: CgroupLimits(memoryBytes: 64 << 20, cpuMillis: 1000, pids: 64))
        try cg.remove()
    }
    try median("cgroup create+remove (none)") {
        let cg = try runtime.cgroups.create(name: ContainerID().hex, limits: CgroupLimits())
        try cg.remove()
    }
    var startT: [Double] = [], waitT: [Double] = []
    for _ in 0..<n {
        var spec = ContainerSpec(rootfs: rootfs, command: ["/bin/true"])
        spec.stdio = [-1, devnull, devnull]
        spec.limits = CgroupLimits(memoryBytes: 64 << 20, cpuMillis: 1000, pids: 64)
        let t0 = now()
        let c = try runtime.start(spec)
        let t1 = now()
        _ = c.wait()
        startT.append(t1 - t0)
        while (runtime.networkPool?.available ?? pool) < pool { usleep(200) }
        waitT.append(now() - t1)
    }
    startT.sort()
    waitT.sort()
    print("start (cgroup + setup + exec): \(format3(startT[n / 2])) ms, wait (exit + teardown + cgroup removal): \(format3(waitT[n / 2])) ms")
    for (label, net, seccomp) in [("run host net, no seccomp", ContainerSpec.NetworkMode.host, false), ("run host net, seccomp", .host, true),
                                  ("run netns, seccomp", .none, true)] {
        try median(label) {
            var spec = ContainerSpec(rootfs: rootfs, command: ["/bin/true"])
            spec.network = net
            spec.seccomp = seccomp ? .default : .unconfined
            spec.stdio = [-1, devnull, devnull]
            _ = try runtime.start(spec).wait()
        }
    }
}

/// `propeller-bench profile-cli`: the one-time costs a one-shot `propeller run` pays.
func profileOneShot() throws {
    func once(_ label: String, _ body: () throws -> Void) rethrows {
        let t0 = now()
        try body()
        print("\(label): \(format3(now() - t0)) ms")
    }
    var runtime: ContainerRuntime?
    try once("runtime init (cgroup layout)") { runtime = try ContainerRuntime() }
    try once("seccomp compile (libseccomp)") { _ = try SeccompProgram(profile: .defaultProfile, capabilities: .defaultSet) }
    let tmp = "/run/propeller-bench-cache-\(getpid())"
    try once("seccomp cache miss (compile + store)") { _ = try SeccompCache(directory: tmp).program(profile: .defaultProfile, capabilities: .defaultSet) }
    try once("seccomp cache hit") { _ = try SeccompCache(directory: tmp).program(profile: .defaultProfile, capabilities: .defaultSet) }
    _ = system("rm -rf '\(tmp)'")
    guard let runtime else { return }
    try once("first cgroup (creates bases)") { try runtime.cgroups.create(name: ContainerID().hex, limits: CgroupLimits()).remove() }
    try once("second cgroup") { try runtime.cgroups.create(name: ContainerID().hex, limits: CgroupLimits()).remove() }
    once("remove bases") { runtime.shutdown() }
}

