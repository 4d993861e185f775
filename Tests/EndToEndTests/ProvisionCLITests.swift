import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

@Suite("propeller provision and --config")
struct ProvisionCLITests {
    @Test func theUnitsPassSystemdsOwnCheck() throws {
        let dir = try TempDirectory("propeller-units")
        defer { dir.remove() }
        let ca = try TestCA(dir.path + "/ca")
        let cert = try ca.issue("manager")
        let r = try propeller(["provision", "--out", dir.path + "/d", "--binary", propellerBinary, "--manager-url", "https://127.0.0.1:7443",
                               "--manager-tls-cert", cert.certificate, "--manager-tls-key", cert.key])
        try #require(r.status == 0, "\(r.stderrText)")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            print("skipped: no systemd-analyze on this machine")
            return
        }
        for unit in ["propeller-manager", "propeller-proxy", "propeller-proplet"] {
            let check = try runTool("/usr/bin/systemd-analyze", ["verify", dir.path + "/d/systemd/\(unit).service"])
            #expect(check.status == 0 && check.stderr.isEmpty && check.stdout.isEmpty, "\(unit): \(check.stderr)\(check.stdout)")
        }
    }

    @Test func flagsOverrideTheConfigFileAndBadFilesAreRefused() throws {
        let dir = try TempDirectory("propeller-config")
        defer { dir.remove() }
        let config = dir.path + "/cli.conf"
        writeFile(config, "# a comment\nmanager = http://127.0.0.1:1\napi-token = ptk_x\n")
        chmod(config, 0o600)
        let fromFile = try propeller(["task", "list", "--config", config])
        #expect(fromFile.status != 0 && fromFile.stderrText.contains("http://127.0.0.1:1"), "\(fromFile.stderrText)")
        let overridden = try propeller(["task", "list", "--config", config, "--manager", "http://127.0.0.1:2"])
        #expect(overridden.stderrText.contains("http://127.0.0.1:2") && !overridden.stderrText.contains(":1:"), "\(overridden.stderrText)")

        chmod(config, 0o640)
        let loose = try propeller(["task", "list", "--config", config])
        #expect(loose.status == 125 && loose.stderrText.contains("can be read by other users"), "\(loose.stderrText)")

        writeFile(config, "manager = http://127.0.0.1:1\nno equals sign\n")
        let malformed = try propeller(["task", "list", "--config", config])
        #expect(malformed.status == 125 && malformed.stderrText.contains("line 2: expected KEY = VALUE"), "\(malformed.stderrText)")
        writeFile(config, "colour = blue\n")
        let unknown = try propeller(["task", "list", "--config", config])
        #expect(unknown.status == 125 && unknown.stderrText.contains("colour"), "\(unknown.stderrText)")
        let missing = try propeller(["task", "list", "--config", dir.path + "/nope.conf"])
        #expect(missing.status == 125 && missing.stderrText.contains("nope.conf"), "\(missing.stderrText)")
        let token = try propeller(["task", "list", "--api-token", "ptk_x"])
        #expect(token.status == 125 && token.stderrText.contains("not accepted on the command line"), "\(token.stderrText)")
    }
}
