@testable import PropellerRuntime
import Testing

@Suite("Cgroup layout detection")
struct CgroupLayoutTests {
    /// This project's CI machines: v1 controllers, cgroup2 at /sys/fs/cgroup/unified, and a
    /// memory cgroup path that differs from the others.
    static let hybridMountinfo = """
    22 1 0:21 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    23 22 0:22 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
    24 22 0:23 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
    25 22 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    26 22 0:25 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
    27 22 0:26 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
    28 22 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
    29 22 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """
    static let hybridCgroup = """
    9:name=systemd:/
    8:pids:/
    6:freezer:/
    4:memory:/process_api/abc
    2:cpuacct:/
    1:cpu:/
    0::/
    """

    @Test func hybridHostUsesV1AndSeesTheUnifiedHierarchy() throws {
        let layout = try CgroupLayout.parse(mountinfo: Self.hybridMountinfo, procCgroup: Self.hybridCgroup)
        #expect(layout.mode == .legacy)
        #expect(layout.v1["memory"]?.ownDirectory == "/sys/fs/cgroup/memory/process_api/abc")
        #expect(layout.v1["cpu"]?.ownDirectory == "/sys/fs/cgroup/cpu")
        #expect(layout.v1["pids"]?.ownDirectory == "/sys/fs/cgroup/pids")
        #expect(layout.v1["name=systemd"] == nil)
        #expect(layout.unified?.ownDirectory == "/sys/fs/cgroup/unified")
    }

    @Test func coMountedControllersShareOneHierarchy() throws {
        let mountinfo = "30 22 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        let layout = try CgroupLayout.parse(mountinfo: mountinfo, procCgroup: "3:cpu,cpuacct:/user.slice\n")
        #expect(layout.v1["cpu"] == layout.v1["cpuacct"])
        #expect(layout.v1["cpu"]?.ownDirectory == "/sys/fs/cgroup/cpu,cpuacct/user.slice")
    }

    @Test func pureV2Host() throws {
        let mountinfo = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
        let layout = try CgroupLayout.parse(mountinfo: mountinfo, procCgroup: "0::/system.slice/propeller-proplet.service\n")
        #expect(layout.mode == .unified)
        #expect(layout.unified?.ownDirectory == "/sys/fs/cgroup/system.slice/propeller-proplet.service")
        #expect(layout.v1.isEmpty)
    }

    @Test func cgroupNamespaceRootIsStripped() throws {
        // Inside a cgroup namespace the mount root can be our own path.
        let mountinfo = "35 24 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        let layout = try CgroupLayout.parse(mountinfo: mountinfo, procCgroup: "0::/kubepods/pod1/agent\n")
        #expect(layout.unified?.ownDirectory == "/sys/fs/cgroup/agent")
    }

    @Test func escapedMountPoints() throws {
        let mountinfo = "35 24 0:30 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n"
        let layout = try CgroupLayout.parse(mountinfo: mountinfo, procCgroup: "0::/\n")
        #expect(layout.unified?.ownDirectory == "/mnt/with space")
    }

    @Test func noCgroupsIsAnError() {
        #expect(throws: (any Error).self) {
            try CgroupLayout.parse(mountinfo: "1 0 0:1 / / rw - ext4 /dev/vda rw\n", procCgroup: "")
        }
    }

    @Test func thisHostIsDetected() throws {
        let layout = try CgroupLayout.current()
        #expect(layout.unified != nil || !layout.v1.isEmpty)
    }
}
