import Foundation
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// Both drivers against temp directory trees shaped like each hierarchy (see
/// ``SimulatedCgroupFilesystem``).
@Suite("Cgroup drivers against simulated cgroupfs")
struct CgroupDriverTests {
    static let v1Files: [String: [String: String]] = [
        "/memory": ["cgroup.procs": "", "tasks": "", "memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
                    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "memory.max_usage_in_bytes": "4096000\n",
                    "memory.usage_in_bytes": "2097152\n"],
        "/cpu": ["cgroup.procs": "", "tasks": "", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 5000000\n"],
        "/cpuacct": ["cgroup.procs": "", "tasks": "", "cpuacct.usage": "123456000\n"],
        "/pids": ["cgroup.procs": "", "tasks": "", "pids.max": "max", "pids.current": "3\n"],
        "/freezer": ["cgroup.procs": "", "tasks": "", "freezer.state": "THAWED"],
        "/unified": ["cgroup.procs": "", "cgroup.kill": ""],
    ]

    func v1Tree(_ tmp: TempDirectory, controllers: [String] = ["memory", "cpu", "cpuacct", "pids", "freezer"]) throws -> (CgroupLayout, SimulatedCgroupFilesystem) {
        var files: [String: [String: String]] = [:]
        var mountinfo = ""
        var procCgroup = "0::/\n"
        for (i, c) in (controllers + ["unified"]).enumerated() {
            mkdirs(tmp.path + "/\(c)/own")
            files[tmp.path + "/\(c)/own/"] = Self.v1Files["/\(c)"]
            if c == "unified" {
                mountinfo += "\(40 + i) 22 0:\(40 + i) / /unified rw - cgroup2 cgroup2 rw\n"
            } else {
                mountinfo += "\(40 + i) 22 0:\(40 + i) / /\(c) rw - cgroup cgroup rw,\(c)\n"
                procCgroup += "\(i + 1):\(c):/own\n"
            }
        }
        // cgroup2 hierarchy: we live at its root here.
        let layoutText = mountinfo.replacingOccurrences(of: "/unified rw - cgroup2", with: "/unified rw - cgroup2")
        var layout = try CgroupLayout.parse(mountinfo: layoutText, procCgroup: procCgroup, rootPrefix: tmp.path)
        layout.unified = CgroupLayout.Hierarchy(controllers: [], ownDirectory: tmp.path + "/unified/own")
        return (layout, SimulatedCgroupFilesystem(interfaceFiles: files))
    }

    @Test func v1CreatesOneCgroupPerHierarchyAndWritesLimits() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let (layout, fs) = try v1Tree(tmp)
        #expect(layout.mode == .legacy)
        let driver = CgroupDrivers.driver(for: layout, filesystem: fs)
        let cg = try driver.create(name: "task1", limits: CgroupLimits(memoryBytes: 32 << 20, cpuMillis: 250, pids: 16))
        let memory = tmp.path + "/memory/own/propeller/task1"
        #expect(readFile(memory + "/memory.limit_in_bytes") == String(32 << 20))
        #expect(readFile(memory + "/memory.memsw.limit_in_bytes") == String(32 << 20))
        #expect(readFile(tmp.path + "/cpu/own/propeller/task1/cpu.cfs_quota_us") == "25000")
        #expect(readFile(tmp.path + "/cpu/own/propeller/task1/cpu.cfs_period_us") == "100000")
        #expect(readFile(tmp.path + "/pids/own/propeller/task1/pids.max") == "16")
        // The child joins each v1 hierarchy through `tasks` (no global lock for a thread that
        // moves itself) and not the controller-less cgroup2 hierarchy of a hybrid host.
        #expect(cg.joinFiles.count == 5)  // memory cpu cpuacct pids freezer
        #expect(cg.joinFiles.allSatisfy { $0.hasSuffix("/propeller/task1/tasks") })
        #expect(!cg.joinFiles.contains { $0.contains("/unified/") })
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/unified/own/propeller/task1"))

        let stats = cg.stats()
        #expect(stats.oomKills == 2)
        #expect(stats.memoryPeakBytes == 4_096_000)
        #expect(stats.cpuUsageMicros == 123_456)
        #expect(stats.throttledPeriods == 4)
        #expect(stats.throttledMicros == 5000)
        // Live usage: no io.stat on v1 (no blkio hierarchy of ours).
        let usage = cg.usage()
        #expect(usage.cpuUsageMicros == 123_456 && usage.memoryBytes == 2_097_152 && usage.pids == 3)
        #expect(usage.ioReadBytes == nil && usage.ioWriteBytes == nil)

        try cg.killAll()
        #expect(readFile(tmp.path + "/freezer/own/propeller/task1/freezer.state") == "THAWED")
        try cg.remove()
        #expect(FileManager.default.fileExists(atPath: tmp.path + "/memory/own/propeller"), "the base stays while the runtime lives")
        driver.removeEmptyBases()
        for c in ["memory", "cpu", "cpuacct", "pids", "freezer", "unified"] {
            #expect(!FileManager.default.fileExists(atPath: tmp.path + "/\(c)/own/propeller"), "left \(c) behind")
        }
    }

    @Test func v1RefusesALimitWithoutItsController() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let (layout, fs) = try v1Tree(tmp, controllers: ["cpu", "cpuacct", "pids", "freezer"])
        let driver = CgroupDrivers.driver(for: layout, filesystem: fs)
        let error = #expect(throws: PropellerError.self) {
            try driver.create(name: "task2", limits: CgroupLimits(memoryBytes: 64 << 20))
        }
        #expect(error?.code == .unsupported)
        #expect(error?.message.contains("memory") == true)
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/cpu/own/propeller/task2"))
        // Without a memory limit the same host is fine.
        let cg = try driver.create(name: "task3", limits: CgroupLimits(pids: 5))
        try cg.remove()
    }

    @Test func v1KillsThroughTheFreezerWithoutCgroupKill() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        var (layout, fs) = try v1Tree(tmp)
        layout.unified = nil
        let cg = try CgroupDrivers.driver(for: layout, filesystem: fs).create(name: "t", limits: CgroupLimits())
        #expect(cg.joinFiles.count == 5)
        try cg.killAll()
        #expect(readFile(tmp.path + "/freezer/own/propeller/t/freezer.state") == "THAWED")
        try cg.remove()
    }

    static let v2Files: [String: String] = [
        "cgroup.procs": "", "cgroup.type": "domain", "cgroup.controllers": "cpuset cpu io memory hugetlb pids",
        "cgroup.subtree_control": "", "cgroup.kill": "", "memory.max": "max", "memory.swap.max": "max",
        "cpu.max": "max 100000", "pids.max": "max",
        "memory.events": "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n", "memory.peak": "33554432\n",
        "cpu.stat": "usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\nnr_periods 20\nnr_throttled 15\nthrottled_usec 900000\n",
        "memory.current": "1048576\n", "pids.current": "2\n",
        "io.stat": "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=10 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n",
    ]

    func v2Tree(_ tmp: TempDirectory, ownProcs: String = "", controllers: String = "cpuset cpu io memory hugetlb pids") throws -> (CgroupLayout, SimulatedCgroupFilesystem) {
        let own = tmp.path + "/sys/fs/cgroup/system.slice/proplet.service"
        mkdirs(own)
        for (name, content) in Self.v2Files { writeFile(own + "/" + name, content) }
        writeFile(own + "/cgroup.procs", ownProcs)
        writeFile(own + "/cgroup.controllers", controllers)
        var files = Self.v2Files
        files["cgroup.controllers"] = controllers
        let layout = try CgroupLayout.parse(
            mountinfo: "35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            procCgroup: "0::/system.slice/proplet.service\n", rootPrefix: tmp.path)
        return (layout, SimulatedCgroupFilesystem(interfaceFiles: [own + "/": files]))
    }

    /// A v2 driver over a simulated `<own>` cgroup (see ``v2Tree``).
    func v2Driver(_ tmp: TempDirectory, ownProcs: String = "", controllers: String = "cpuset cpu io memory hugetlb pids",
                  movesSelfToLeaf: Bool = false) throws -> CgroupV2Driver {
        let (layout, fs) = try v2Tree(tmp, ownProcs: ownProcs, controllers: controllers)
        return CgroupV2Driver(layout: layout, fs: fs, movesSelfToLeaf: movesSelfToLeaf)
    }

    @Test func v2EnablesControllersAndWritesLimits() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let (layout, fs) = try v2Tree(tmp)
        #expect(layout.mode == .unified)
        let driver = CgroupV2Driver(layout: layout, fs: fs, movesSelfToLeaf: false)
        let cg = try driver.create(name: "t1", limits: CgroupLimits(memoryBytes: 32 << 20, cpuMillis: 250, pids: 16))
        let own = tmp.path + "/sys/fs/cgroup/system.slice/proplet.service"
        #expect(readFile(own + "/cgroup.subtree_control") == "+cpu +memory +pids")
        #expect(readFile(own + "/propeller/cgroup.subtree_control") == "+cpu +memory +pids")
        let dir = own + "/propeller/t1"
        #expect(readFile(dir + "/memory.max") == String(32 << 20))
        #expect(readFile(dir + "/memory.swap.max") == "0")
        #expect(readFile(dir + "/cpu.max") == "25000 100000")
        #expect(readFile(dir + "/pids.max") == "16")
        #expect(cg.joinFiles == [dir + "/cgroup.procs"])

        let stats = cg.stats()
        #expect(stats.oomKills == 1)
        #expect(stats.memoryPeakBytes == 33_554_432)
        #expect(stats.cpuUsageMicros == 250_000)
        #expect(stats.throttledPeriods == 15)
        let usage = cg.usage()
        #expect(usage.cpuUsageMicros == 250_000 && usage.memoryBytes == 1_048_576 && usage.pids == 2)
        #expect(usage.ioReadBytes == 1010 && usage.ioWriteBytes == 2020)
        try cg.killAll()
        #expect(readFile(dir + "/cgroup.kill") == "1")
        try cg.remove()
        driver.removeEmptyBases()
        #expect(!FileManager.default.fileExists(atPath: own + "/propeller"))
    }

    @Test func v2RefusesWhenTheHostLacksAController() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let driver = try v2Driver(tmp, controllers: "cpu pids")
        let error = #expect(throws: PropellerError.self) {
            try driver.create(name: "t2", limits: CgroupLimits(memoryBytes: 64 << 20))
        }
        #expect(error?.code == .unsupported)
        #expect(error?.message.contains("memory controller is not available") == true)
    }

    @Test func v2RefusesWhenOtherProcessesShareItsCgroup() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let driver = try v2Driver(tmp, ownProcs: "1\n2\n", movesSelfToLeaf: true)
        let error = #expect(throws: PropellerError.self) {
            try driver.create(name: "t3", limits: CgroupLimits(pids: 10))
        }
        #expect(error?.message.contains("Delegate=yes") == true)
    }

    @Test func v2MovesItselfToALeafWhenAlone() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let driver = try v2Driver(tmp, ownProcs: "\(getpid())\n", movesSelfToLeaf: true)
        let cg = try driver.create(name: "t4", limits: CgroupLimits(pids: 10))
        let own = tmp.path + "/sys/fs/cgroup/system.slice/proplet.service"
        #expect(readFile(own + "/supervisor/cgroup.procs") == "0")
        try cg.remove()
    }
}
