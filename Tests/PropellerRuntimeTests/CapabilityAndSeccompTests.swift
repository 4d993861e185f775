import Foundation
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

@Suite("Capabilities and seccomp profiles")
struct CapabilityAndSeccompTests {
    @Test func defaultSetIsDockersMinusNetRaw() {
        #expect(CapabilitySet.defaultSet.description == "00000000a80405fb")
        #expect(CapabilitySet.defaultSet.names == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                                                    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP"])
    }

    @Test func namesParseWithLibcapInAnySpelling() throws {
        #expect(try Capabilities.number(forName: "NET_RAW") == 13)
        #expect(try Capabilities.number(forName: "cap_net_raw") == 13)
        #expect(try Capabilities.number(forName: "Sys_Admin") == 21)
        #expect(throws: PropellerError.self) { try Capabilities.number(forName: "NOT_A_CAP") }
        #expect(throws: PropellerError.self) { try Capabilities.number(forName: "net raw;") }
    }

    @Test func addAndDropAdjustTheSet() throws {
        let withRaw = try CapabilitySet.defaultSet.adjusted(adding: ["NET_RAW"], dropping: [])
        #expect(withRaw.description == "00000000a80425fb")
        let none = try CapabilitySet.defaultSet.adjusted(adding: [], dropping: ["ALL"])
        #expect(none.mask == 0)
        let onlyChown = try CapabilitySet.defaultSet.adjusted(adding: ["CHOWN"], dropping: ["ALL"])
        #expect(onlyChown.names == ["CHOWN"])
        let dropped = try CapabilitySet.defaultSet.adjusted(adding: [], dropping: ["SETUID", "cap_setgid"])
        #expect(!dropped.contains(7) && !dropped.contains(6) && dropped.contains(0))
    }

    @Test func defaultProfileCompilesToBPF() throws {
        let program = try SeccompProgram(profile: .defaultProfile, capabilities: .defaultSet)
        #expect(program.instructionCount > 100)
        // More capabilities, more allowed syscalls, a different program.
        let admin = try SeccompProgram(profile: .defaultProfile, capabilities: try CapabilitySet.defaultSet.adjusted(adding: ["SYS_ADMIN"], dropping: []))
        #expect(admin.instructionCount != program.instructionCount)
    }

    @Test func defaultProfileLeavesOutDangerousSyscalls() {
        let allowed = Set(SeccompProfile.defaultProfile.rules(for: .defaultSet).filter { $0.action == .allow && $0.args == nil }.flatMap(\.names))
        for name in ["mount", "umount2", "unshare", "setns", "keyctl", "add_key", "kexec_load", "bpf", "ptrace", "personality",
                     "clone", "pivot_root", "perf_event_open", "userfaultfd", "io_uring_setup", "init_module"] {
            #expect(!allowed.contains(name), "\(name) must not be allowed unconditionally")
        }
        #expect(allowed.contains("read") && allowed.contains("execve") && allowed.contains("chroot"))
    }

    @Test func runtimeCompilesEachProfileOnce() throws {
        let runtime = try ContainerRuntime()
        let a = try runtime.seccompProgram(.default, capabilities: .defaultSet)
        let b = try runtime.seccompProgram(.default, capabilities: .defaultSet)
        #expect(a != nil && a === b)
        #expect(try runtime.seccompProgram(.unconfined, capabilities: .defaultSet) == nil)
    }

    @Test func profileFilesInDockerFormatLoad() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let path = tmp.path + "/profile.json"
        writeFile(path, """
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                      {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}]}
        """)
        let profile = try SeccompProfile.load(path: path)
        #expect(profile.defaultAction == .allow)
        #expect(profile.syscalls.count == 2)
        #expect(try SeccompProgram(profile: profile, capabilities: .defaultSet).instructionCount > 0)
    }

    @Test(arguments: [
        ("{not json", "not valid JSON"),
        ("{\"syscalls\": []}", "missing \"defaultAction\""),
        ("{\"defaultAction\": \"SCMP_ACT_NOPE\", \"syscalls\": []}", "profile"),
        ("{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": 5, \"action\": \"SCMP_ACT_ALLOW\"}]}", "syscalls"),
    ])
    func badProfilesGiveClearErrors(json: String, expected: String) throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        writeFile(tmp.path + "/p.json", json)
        let error = #expect(throws: PropellerError.self) { try SeccompProfile.load(path: tmp.path + "/p.json") }
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(tmp.path + "/p.json") == true)
    }

    @Test func missingProfileFileIsNotFound() {
        let error = #expect(throws: PropellerError.self) { try SeccompProfile.load(path: "/nonexistent/profile.json") }
        #expect(error?.code == .notFound)
    }
}

@Suite("Users from the rootfs's passwd and group files")
struct UserResolverTests {
    let resolver = UserResolver(passwd: """
    root:x:0:0:root:/root:/bin/sh
    app:x:1000:1000:app:/home/app:/bin/sh
    """, group: """
    root:x:0:
    staff:x:50:app
    wheel:x:10:app,other
    app:x:1000:
    """)

    @Test func rootByDefault() throws {
        let u = try resolver.resolve(nil)
        #expect(u.uid == 0 && u.gid == 0 && u.home == "/root")
    }

    @Test func namesResolveWithSupplementaryGroups() throws {
        let u = try resolver.resolve("app")
        #expect(u.uid == 1000 && u.gid == 1000 && u.home == "/home/app")
        #expect(u.additionalGroups == [50, 10])
    }

    @Test func numericUsersNeedNoEntry() throws {
        let u = try resolver.resolve("4242:4343")
        #expect(u.uid == 4242 && u.gid == 4343 && u.additionalGroups.isEmpty && u.home == "/")
        #expect(try resolver.resolve("1000").gid == 1000)
    }

    @Test func explicitGroupByName() throws {
        let u = try resolver.resolve("app:staff")
        #expect(u.gid == 50 && u.additionalGroups.isEmpty)
    }

    @Test(arguments: ["ghost", "app:ghosts", ":5", "a/b", "root:x/y"])
    func unknownOrInvalidUsersFail(spec: String) {
        #expect(throws: PropellerError.self) { try resolver.resolve(spec) }
    }
}

@Suite("Compiled seccomp programs cached on disk")
struct SeccompCacheTests {
    @Test func secondLoadReadsTheSameProgram() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        chmod(tmp.path, 0o700)
        let cache = SeccompCache(directory: tmp.path + "/seccomp")
        let first = try cache.program(profile: .defaultProfile, capabilities: .defaultSet)
        let files = try FileManager.default.contentsOfDirectory(atPath: tmp.path + "/seccomp")
        #expect(files.count == 1 && files[0].hasSuffix(".bpf"))
        let second = try cache.program(profile: .defaultProfile, capabilities: .defaultSet)
        #expect(second.bytes == first.bytes)
        // Another capability set is another program.
        let admin = try cache.program(profile: .defaultProfile, capabilities: CapabilitySet.defaultSet.adjusted(adding: ["SYS_ADMIN"], dropping: []))
        #expect(admin.bytes != first.bytes)
    }

    @Test(.enabled(if: isRoot, "requires root: the cache trusts only root-owned files"))
    func aFileWithAnotherKeyIsIgnored() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let dir = tmp.path + "/seccomp"
        let cache = SeccompCache(directory: dir)
        let real = try cache.program(profile: .defaultProfile, capabilities: .defaultSet)
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first)
        // Replace the file with an allow-everything program filed under the same name.
        let permissive = SeccompProfile(defaultAction: .allow, syscalls: [])
        let other = try SeccompProgram(profile: permissive, capabilities: .defaultSet)
        var forged = Array("propeller-seccomp-bpf 1\n00000003\nxyz".utf8)
        forged += other.bytes
        try Data(forged).write(to: URL(fileURLWithPath: dir + "/" + name))
        chmod(dir + "/" + name, 0o600)
        let loaded = try cache.program(profile: .defaultProfile, capabilities: .defaultSet)
        #expect(loaded.bytes == real.bytes)
    }

    @Test func aWorldWritableDirectoryIsNotTrusted() throws {
        let tmp = try TempDirectory()
        defer { tmp.remove() }
        let dir = tmp.path + "/seccomp"
        mkdirs(dir)
        chmod(dir, 0o777)
        let cache = SeccompCache(directory: dir)
        _ = try cache.program(profile: .defaultProfile, capabilities: .defaultSet)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}
