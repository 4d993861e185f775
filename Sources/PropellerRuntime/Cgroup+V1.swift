#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// The cgroup v1 / hybrid driver: one directory per controller hierarchy it uses.
///
/// A hybrid host's controller-less cgroup2 hierarchy is not joined: joining it would move the
/// child under the kernel's global threadgroup lock (v2 semantics, see
/// ``TaskCgroup/joinFiles``), 5-20 ms per container, for nothing but `cgroup.kill`. Tasks are
/// killed through the freezer instead, as runc does on v1. (Earlier builds joined it;
/// ``removeLeftover(name:)`` still finds what they left there.)
struct CgroupV1Driver: CgroupDriver {
    let layout: CgroupLayout
    let fs: any CgroupFilesystem

    init(layout: CgroupLayout, fs: any CgroupFilesystem) {
        self.layout = layout
        self.fs = fs
    }

    func create(name: String, limits: CgroupLimits) throws -> any TaskCgroup {
        // Limits first: refuse before creating anything.
        var required: [String] = []
        if limits.memoryBytes != nil { required.append("memory") }
        if limits.cpuMillis != nil { required.append("cpu") }
        if limits.pids != nil { required.append("pids") }
        for controller in required where layout.v1[controller] == nil {
            throw PropellerError(.unsupported, "cgroup v1: the \(controller) controller is not mounted on this host, so the \(controller) limit cannot be enforced")
        }

        // Every hierarchy we can use, once (cpu and cpuacct may share one).
        var seen = Set<String>()
        var hierarchies: [(controllers: [String], own: String)] = []
        for controller in ["memory", "cpu", "cpuacct", "pids", "freezer"] {
            guard let h = layout.v1[controller], !seen.contains(h.ownDirectory) else { continue }
            seen.insert(h.ownDirectory)
            hierarchies.append((h.controllers, h.ownDirectory))
        }

        var created: [V1TaskCgroup.Member] = []
        do {
            for h in hierarchies {
                let base = h.own + "/" + cgroupBaseName
                let dir = base + "/" + name
                try makeTaskDirectory(fs, base: base, task: dir) { _ in }
                created.append(.init(controllers: h.controllers, directory: dir))
            }
            let task = V1TaskCgroup(fs: fs, members: created)
            try task.apply(limits)
            return task
        } catch {
            for m in created.reversed() { try? fs.removeDirectory(m.directory) }
            throw error
        }
    }
}

extension CgroupV1Driver {
    func removeLeftover(name: String) -> Bool {
        var members: [V1TaskCgroup.Member] = []
        var seen = Set<String>()
        for (_, h) in layout.v1.sorted(by: { $0.key < $1.key }) where !seen.contains(h.ownDirectory) {
            seen.insert(h.ownDirectory)
            let dir = h.ownDirectory + "/" + cgroupBaseName + "/" + name
            if fs.exists(dir) { members.append(.init(controllers: h.controllers, directory: dir)) }
        }
        if let unified = layout.unified, !seen.contains(unified.ownDirectory) {
            let dir = unified.ownDirectory + "/" + cgroupBaseName + "/" + name
            if fs.exists(dir) { members.append(.init(controllers: [], directory: dir)) }
        }
        guard !members.isEmpty else { return false }
        let task = V1TaskCgroup(fs: fs, members: members)
        try? task.killAll()
        try? task.remove()
        return true
    }

    func removeEmptyBases() {
        var owns = Set(layout.v1.values.map(\.ownDirectory))
        if let unified = layout.unified { owns.insert(unified.ownDirectory) }
        for own in owns { removeBaseIfEmpty(fs, own + "/" + cgroupBaseName) }
    }
}

struct V1TaskCgroup: TaskCgroup {
    struct Member: Sendable {
        var controllers: [String]
        var directory: String
    }

    let fs: any CgroupFilesystem
    let members: [Member]

    var joinFiles: [String] { members.map { $0.directory + "/tasks" } }
    var cloneIntoDirectory: String? { nil }
    var directories: [String] { members.map(\.directory) }

    func directory(for controller: String) -> String? {
        members.first { $0.controllers.contains(controller) }?.directory
    }

    var unifiedDirectory: String? { members.first { $0.controllers.isEmpty }?.directory }

    func apply(_ limits: CgroupLimits) throws {
        if let bytes = limits.memoryBytes, let dir = directory(for: "memory") {
            try fs.write(dir + "/memory.limit_in_bytes", String(bytes))
            // No swap beyond the limit where the kernel accounts swap (memsw must be >= limit).
            if fs.exists(dir + "/memory.memsw.limit_in_bytes") {
                try fs.write(dir + "/memory.memsw.limit_in_bytes", String(bytes))
            }
            if fs.exists(dir + "/memory.swappiness") { try? fs.write(dir + "/memory.swappiness", "0") }
        }
        if let quota = limits.cpuQuotaMicros, let dir = directory(for: "cpu") {
            try fs.write(dir + "/cpu.cfs_period_us", String(CgroupLimits.cpuPeriodMicros))
            try fs.write(dir + "/cpu.cfs_quota_us", String(quota))
        }
        if let pids = limits.pids, let dir = directory(for: "pids") {
            try fs.write(dir + "/pids.max", String(pids))
        }
    }

    func stats() -> CgroupStats {
        var s = CgroupStats()
        if let dir = directory(for: "memory") {
            if let text = try? fs.read(dir + "/memory.oom_control") { s.oomKills = parseFlatKeyed(text)["oom_kill"] ?? 0 }
            if let text = try? fs.read(dir + "/memory.max_usage_in_bytes") { s.memoryPeakBytes = UInt64(text.trimmingWhitespace()) }
        }
        if let dir = directory(for: "cpuacct"), let text = try? fs.read(dir + "/cpuacct.usage"), let ns = UInt64(text.trimmingWhitespace()) {
            s.cpuUsageMicros = ns / 1000
        }
        if let dir = directory(for: "cpu"), let text = try? fs.read(dir + "/cpu.stat") {
            let stat = parseFlatKeyed(text)
            s.throttledPeriods = stat["nr_throttled"]
            s.throttledMicros = stat["throttled_time"].map { $0 / 1000 }
        }
        return s
    }

    func usage() -> CgroupUsage {
        var u = CgroupUsage()
        if let dir = directory(for: "cpuacct"), let ns = try? fs.read(dir + "/cpuacct.usage"), let value = UInt64(ns.trimmingWhitespace()) {
            u.cpuUsageMicros = value / 1000
        }
        if let dir = directory(for: "memory"), let text = try? fs.read(dir + "/memory.usage_in_bytes") { u.memoryBytes = UInt64(text.trimmingWhitespace()) }
        if let dir = directory(for: "pids"), let text = try? fs.read(dir + "/pids.current") { u.pids = UInt64(text.trimmingWhitespace()) }
        return u
    }

    func killAll() throws {
        if let dir = unifiedDirectory, fs.exists(dir + "/cgroup.kill") {
            try fs.write(dir + "/cgroup.kill", "1")
            return
        }
        // No cgroup.kill: freeze so nothing forks while we kill, then thaw so the kills land.
        // An empty cgroup (the usual case, after the container's PID 1 exited and took its
        // namespace with it) needs neither: nothing in it can fork. (Freezing and thawing cost
        // a quarter of a millisecond of every `propeller run`.)
        guard let dir = members.first?.directory else { return }
        if ((try? fs.read(dir + "/cgroup.procs")) ?? "").isEmpty { return }
        let freezer = directory(for: "freezer")
        if let freezer { try? fs.write(freezer + "/freezer.state", "FROZEN") }
        defer { if let freezer { try? fs.write(freezer + "/freezer.state", "THAWED") } }
        let procs = (try? fs.read(dir + "/cgroup.procs")) ?? ""
        for line in procs.split(separator: "\n") {
            if let pid = pid_t(line) { kill(pid, SIGKILL) }
        }
    }

    func remove() throws {
        var firstError: (any Error)?
        for m in members.reversed() {
            do { try removeCgroupDirectory(fs, m.directory) } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }
}
