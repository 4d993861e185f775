import Foundation
import PropellerCore
@testable import PropellerCLI
@testable import PropellerProvision
import PropellerRuntime
import PropellerTestSupport
import Testing

/// The files an operator edits (or a provisioning step writes) and the flags parsed from text:
/// a malformed file is refused with its line number, never a trap.
@Suite struct FuzzConfigTests {
    @Test func configFilesAndFlagValues() {
        let seeds = ["mqtt = mqtts://broker.example:8883\nmqtt-ca = /etc/propeller/ca.pem\n# comment\nlabel = zone=a\nlabel = \"quoted\"\n",
                     "verbose = true\nquiet = false\n", "=\n", "mqtt-password = x\n\n\n", "nofile=2048:4096", "nproc=unlimited", "core=-1:-1"].map { Array($0.utf8) }
        Fuzzer.run("config-files", seeds: seeds) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            if let file = try? ConfigFile(path: "fuzz.conf", text: text) {
                // What the file turns into must parse back as arguments without a secret slipping
                // onto the command line.
                _ = try? ConfigFile.expand(["task", "list"] + file.arguments)
            }
            _ = try? ContainerSpec.ResourceLimit(parsing: text)
            _ = try? StateFile.parse(text, path: "deployment.conf")
            _ = try? ConfigFile.expand(text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("--config") })
        }
    }

    /// Found by the fuzzer (seed 1796597118039): `--ulimit nofile=` trapped on an index out of range.
    @Test func anUlimitWithAnEmptyValueIsRefused() throws {
        for text in ["nofile=", "nofile=:", "nofile=:5", "nofile=5:"] {
            #expect(throws: PropellerError.self, "\(text)") { try ContainerSpec.ResourceLimit(parsing: text) }
        }
        #expect(try ContainerSpec.ResourceLimit(parsing: "nofile=5:6").hard == 6)
    }

    @Test func aFileWithALineWithoutAnEqualsSignIsRefusedWithItsLineNumber() throws {
        #expect(throws: (any Error).self) { try ConfigFile(path: "f.conf", text: "mqtt = x\nnonsense\n") }
        let file = try ConfigFile(path: "f.conf", text: "mqtt = x\n# c\nlabel = a=b\n")
        #expect(file.arguments == ["--mqtt=x", "--label=a=b"])
    }
}
