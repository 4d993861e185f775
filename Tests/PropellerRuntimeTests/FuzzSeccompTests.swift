import Foundation
import PropellerCore
@testable import PropellerRuntime
import PropellerTestSupport
import Testing

/// Seccomp profiles an operator passes (Docker's JSON format), fuzzed through decoding and
/// compiling (see ``Fuzzer``).
@Suite("Fuzz: seccomp profiles")
struct FuzzSeccompTests {
    @Test func profiles() throws {
        let small = SeccompProfile(defaultAction: .errno, defaultErrnoRet: 1, syscalls: [
            .init(names: ["read", "write", "exit_group"], action: .allow),
            .init(names: ["socket"], action: .allow, args: [.init(index: 0, value: 40, op: .lessThan)]),
            .init(names: ["clone"], action: .allow, args: [.init(index: 0, value: 0x7E02_0000, valueTwo: 0, op: .maskedEqual)], excludes: .init(caps: ["SYS_ADMIN"])),
        ])
        let seeds = [Array(try JSONEncoder().encode(small))]
        let caps = CapabilitySet.defaultSet
        Fuzzer.run("seccomp-profiles", seeds: seeds) { bytes in
            guard let profile = try? JSONDecoder().decode(SeccompProfile.self, from: Data(bytes)) else { return }
            _ = try? SeccompProgram.compile(profile: profile, capabilities: caps)
        }
    }
}
