#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// The cgroup v2 driver (systemd's delegation model): tasks live in `<own>/propeller/<task>`.
///
/// The controllers a task needs must be enabled in `<own>/cgroup.subtree_control` and
/// `<own>/propeller/cgroup.subtree_control`. cgroup v2 forbids enabling controllers for the
/// children of a cgroup that holds processes (the "no internal processes" rule), so when this
/// process sits in `<own>` itself it first moves into the leaf `<own>/supervisor`, as a
/// proplet under a `Delegate=yes` unit does. If other processes share `<own>` the driver stops
/// with an error that says how to start Propeller instead.
struct CgroupV2Driver: CgroupDriver {
    let layout: CgroupLayout
    let fs: any CgroupFilesystem
    /// Moving this process is right for a daemon or `propeller run`; tests turn it off.
    var movesSelfToLeaf = true

    init(layout: CgroupLayout, fs: any CgroupFilesystem, movesSelfToLeaf: Bool = true) {
        self.layout = layout
        self.fs = fs
        self.movesSelfToLeaf = movesSelfToLeaf
    }

    static let leafName = "supervisor"

    func removeEmptyBases() {
        if let own = layout.unified?.ownDirectory { removeBaseIfEmpty(fs, own + "/" + cgroupBaseName) }
    }

    func removeLeftover(name: String) -> Bool {
        guard let own = layout.unified?.ownDirectory else { return false }
        let dir = own + "/" + cgroupBaseName + "/" + name
        guard fs.exists(dir) else { return false }
        let task = V2TaskCgroup(fs: fs, directory: dir)
        try? task.killAll()
        try? task.remove()
        return true
    }

    func create(name: String, limits: CgroupLimits) throws -> any TaskCgroup {
        guard let own = layout.unified?.ownDirectory else {
            throw PropellerError(.unsupported, "cgroup v2: no cgroup2 hierarchy found")
        }
        var needed: [String] = []
        if limits.memoryBytes != nil { needed.append("memory") }
        if limits.cpuMillis != nil { needed.append("cpu") }
        if limits.pids != nil { needed.append("pids") }
        // Always ask for memory and pids when the host has them: their counters feed usage and OOM reports.
        let available = Set(((try? fs.read(own + "/cgroup.controllers")) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        for c in needed where !available.contains(c) {
            throw PropellerError(.unsupported, "cgroup v2: the \(c) controller is not available in \(own) (cgroup.controllers: \(available.sorted().joined(separator: " "))), so the \(c) limit cannot be enforced")
        }
        let wanted = ["cpu", "memory", "pids"].filter { available.contains($0) }

        try enable(wanted, in: own)
        let base = own + "/" + cgroupBaseName
        let dir = base + "/" + name
        try makeTaskDirectory(fs, base: base, task: dir) { base in try enable(wanted, in: base) }
        let task = V2TaskCgroup(fs: fs, directory: dir)
        do {
            try task.apply(limits)
        } catch {
            try? fs.removeDirectory(dir)
            throw error
        }
        return task
    }

    /// Enables `controllers` for the children of `dir`, moving this process out of `dir` first
    /// when it lives there.
    private func enable(_ controllers: [String], in dir: String) throws {
        let current = Set(((try? fs.read(dir + "/cgroup.subtree_control")) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        let missing = controllers.filter { !current.contains($0) }
        if missing.isEmpty { return }
        let isRoot = !fs.exists(dir + "/cgroup.type") // the root cgroup has no cgroup.type
        if !isRoot {
            try vacate(dir)
        }
        do {
            try fs.write(dir + "/cgroup.subtree_control", missing.map { "+" + $0 }.joined(separator: " "))
        } catch let error as PropellerError {
            throw PropellerError(error.code, "cgroup v2: cannot enable \(missing.joined(separator: ", ")) for the children of \(dir) (\(error.message)); start Propeller in a cgroup delegated to it, e.g. a systemd unit with Delegate=yes or `systemd-run --scope -p Delegate=yes propeller ...`")
        }
    }

    /// Moves this process into `<dir>/supervisor` when it is a member of `dir`; fails when other
    /// processes are there too.
    private func vacate(_ dir: String) throws {
        let members = ((try? fs.read(dir + "/cgroup.procs")) ?? "").split(separator: "\n").compactMap { pid_t($0) }
        if members.isEmpty { return }
        let me = getpid()
        let others = members.filter { $0 != me }
        guard movesSelfToLeaf, members.contains(me), others.isEmpty else {
            throw PropellerError(.unsupported, "cgroup v2: \(dir) holds processes (\(members.prefix(5).map(String.init).joined(separator: ", "))), so controllers cannot be enabled for its children; start Propeller in a cgroup delegated to it, e.g. a systemd unit with Delegate=yes or `systemd-run --scope -p Delegate=yes propeller ...`")
        }
        let leaf = dir + "/" + Self.leafName
        try ensureDirectory(fs, leaf)
        try fs.write(leaf + "/cgroup.procs", "0")
    }
}

struct V2TaskCgroup: TaskCgroup {
    let fs: any CgroupFilesystem
    let directory: String

    var joinFiles: [String] { [directory + "/cgroup.procs"] }
    var cloneIntoDirectory: String? { directory }
    var directories: [String] { [directory] }

    func apply(_ limits: CgroupLimits) throws {
        if let bytes = limits.memoryBytes {
            try fs.write(directory + "/memory.max", String(bytes))
            if fs.exists(directory + "/memory.swap.max") { try fs.write(directory + "/memory.swap.max", "0") }
        }
        if let quota = limits.cpuQuotaMicros {
            try fs.write(directory + "/cpu.max", "\(quota) \(CgroupLimits.cpuPeriodMicros)")
        }
        if let pids = limits.pids {
            try fs.write(directory + "/pids.max", String(pids))
        }
    }

    func stats() -> CgroupStats {
        var s = CgroupStats()
        if let text = try? fs.read(directory + "/memory.events") { s.oomKills = parseFlatKeyed(text)["oom_kill"] ?? 0 }
        if let text = try? fs.read(directory + "/memory.peak") { s.memoryPeakBytes = UInt64(text.trimmingWhitespace()) }
        if let text = try? fs.read(directory + "/cpu.stat") {
            let stat = parseFlatKeyed(text)
            s.cpuUsageMicros = stat["usage_usec"]
            s.throttledPeriods = stat["nr_throttled"]
            s.throttledMicros = stat["throttled_usec"]
        }
        return s
    }

    func usage() -> CgroupUsage {
        var u = CgroupUsage()
        if let text = try? fs.read(directory + "/cpu.stat") { u.cpuUsageMicros = parseFlatKeyed(text)["usage_usec"] }
        if let text = try? fs.read(directory + "/memory.current") { u.memoryBytes = UInt64(text.trimmingWhitespace()) }
        if let text = try? fs.read(directory + "/pids.current") { u.pids = UInt64(text.trimmingWhitespace()) }
        // io.stat: a line per device, "MAJ:MIN rbytes=N wbytes=N rios=N ...".
        if let text = try? fs.read(directory + "/io.stat") {
            var read: UInt64 = 0, written: UInt64 = 0
            for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                if field.hasPrefix("rbytes="), let n = UInt64(field.dropFirst(7)) { read += n }
                if field.hasPrefix("wbytes="), let n = UInt64(field.dropFirst(7)) { written += n }
            }
            u.ioReadBytes = read
            u.ioWriteBytes = written
        }
        return u
    }

    func killAll() throws {
        if fs.exists(directory + "/cgroup.kill") {
            try fs.write(directory + "/cgroup.kill", "1")
            return
        }
        // Kernels before 5.14: freeze, kill every member, thaw.
        try? fs.write(directory + "/cgroup.freeze", "1")
        defer { try? fs.write(directory + "/cgroup.freeze", "0") }
        let procs = (try? fs.read(directory + "/cgroup.procs")) ?? ""
        for line in procs.split(separator: "\n") {
            if let pid = pid_t(line) { kill(pid, SIGKILL) }
        }
    }

    func remove() throws {
        try removeCgroupDirectory(fs, directory)
    }
}
