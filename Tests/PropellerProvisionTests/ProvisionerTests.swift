import Foundation
import PropellerCore
@testable import PropellerProvision
import PropellerTestSupport
import Testing

@Suite struct ProvisionerTests {
    @Test func passwordHashesMatchMosquittoPasswd() throws {
        // A line `mosquitto_passwd -b FILE alice s3cret` wrote (mosquitto 2.0.11).
        let known = "$7$101$fSxIKGQ7kcEfxeNl$Hw0ME0a14ilkhAZVDsF5Vv6rdcsMFy9D3uxLJPwO0i1bCaPVQZ5AkF791DpCxgkSKlPu5kZJ3DLFf2LhCPZGxw=="
        #expect(MosquittoPassword.verify(password: "s3cret", hash: known))
        #expect(!MosquittoPassword.verify(password: "s3cres", hash: known))
        let entry = try MosquittoPassword.entry(username: "bob", password: "pw")
        #expect(entry.hasPrefix("bob:$7$101$"))
        #expect(MosquittoPassword.verify(password: "pw", hash: String(entry.dropFirst(4))))
        #expect(try MosquittoPassword.entry(username: "bob", password: "pw") != entry, "a fresh salt each time")
    }

    func deployment(_ dir: String) -> Deployment {
        Deployment(domain: "d1", channel: "c1", broker: "mqtts://127.0.0.1:8883", managerURL: "https://10.0.0.5:7443", configDirectory: dir)
    }

    @Test func createWritesEveryFileWithTheRightModes() throws {
        let dir = try TempDirectory("propeller-provision")
        defer { dir.remove() }
        var d = deployment(dir.path)
        d.managerTLSCert = "/etc/propeller/tls.pem"
        d.managerTLSKey = "/etc/propeller/tls.key"
        let summary = try Provisioner(directory: dir.path).create(d, proplets: 2)
        #expect(summary.deployment.proplets.count == 2)
        for file in [Provisioner.File.manager, Provisioner.File.proxy, Provisioner.File.cli] + summary.deployment.proplets.map(Provisioner.File.proplet) {
            #expect(try mode(dir.path + "/" + file) == 0o600, "\(file)")
        }
        let manager = try String(contentsOfFile: dir.path + "/manager.conf", encoding: .utf8)
        let cli = try String(contentsOfFile: dir.path + "/cli.conf", encoding: .utf8)
        // The CLI holds the token, the manager only its hash.
        let token = try #require(cli.split(separator: "\n").first { $0.hasPrefix("api-token = ") }).dropFirst("api-token = ".count)
        #expect(manager.contains("api-token-sha256 = cli:sha256:" + SHA256.hash(Array(token.utf8)).hexString))
        #expect(!manager.contains(String(token)))
        #expect(manager.contains("http = 0.0.0.0:7443"))
        #expect(manager.contains("mqtt-username = propeller-manager"))
        // The password file holds hashes that verify against the configs' secrets.
        let passwords = try String(contentsOfFile: dir.path + "/mosquitto/password_file", encoding: .utf8)
        for (user, file) in [("propeller-manager", "manager.conf"), ("propeller-proxy", "proxy.conf")] + summary.deployment.proplets.map({ ($0, "proplets/\($0).conf") }) {
            let config = try String(contentsOfFile: dir.path + "/" + file, encoding: .utf8)
            let secret = try #require(config.split(separator: "\n").first { $0.hasPrefix("mqtt-password = ") }).dropFirst("mqtt-password = ".count)
            let line = try #require(passwords.split(separator: "\n").first { $0.hasPrefix(user + ":") })
            #expect(MosquittoPassword.verify(password: String(secret), hash: String(line.dropFirst(user.count + 1))), "\(user)")
            #expect(!passwords.contains(String(secret)))
        }
        let unit = try String(contentsOfFile: dir.path + "/systemd/propeller-manager.service", encoding: .utf8)
        #expect(unit.contains("DynamicUser=yes") && unit.contains("NoNewPrivileges=yes") && unit.contains("LoadCredential=tls.key:/etc/propeller/tls.key"))
        let proplet = try String(contentsOfFile: dir.path + "/systemd/propeller-proplet.service", encoding: .utf8)
        #expect(proplet.contains("User=root") && proplet.contains("Delegate=yes"))
    }

    @Test func aProvisionedDirectoryIsNeverOverwritten() throws {
        let dir = try TempDirectory("propeller-provision")
        defer { dir.remove() }
        let p = Provisioner(directory: dir.path)
        _ = try p.create(deployment(dir.path), proplets: 1)
        let before = try String(contentsOfFile: dir.path + "/manager.conf", encoding: .utf8)
        #expect(throws: PropellerError.self) { _ = try p.create(deployment(dir.path), proplets: 1) }
        #expect(try String(contentsOfFile: dir.path + "/manager.conf", encoding: .utf8) == before)

        let (d, id) = try p.addProplet()
        #expect(d.proplets.count == 2 && d.proplets.last == id)
        #expect(try p.load().proplets == d.proplets)
        #expect(try String(contentsOfFile: dir.path + "/manager.conf", encoding: .utf8) == before)
        #expect(try String(contentsOfFile: dir.path + "/mosquitto/password_file", encoding: .utf8).contains("\n\(id):$7$"))
        #expect(try String(contentsOfFile: dir.path + "/mosquitto/acl_file", encoding: .utf8).contains("user \(id)\n"))
        #expect(try mode(dir.path + "/proplets/\(id).conf") == 0o600)
        #expect(throws: PropellerError.self) { _ = try Provisioner(directory: dir.path + "/nothing").addProplet() }
    }

    @Test func theACLGivesAPropletOnlyItsOwnTopics() throws {
        var d = deployment("/etc/propeller")
        d.proplets = ["p1", "p2"]
        let acl = ACL.text(d)
        let t = d.topics
        let rules = "\n" + acl.split(separator: "\n").filter { !$0.hasPrefix("#") }.joined(separator: "\n")
        let blocks = rules.components(separatedBy: "\nuser ")
        let p1 = try #require(blocks.first { $0.hasPrefix("p1\n") })
        #expect(p1.contains("topic write \(t.report(.alive, from: "p1"))"))
        #expect(p1.contains("topic read \(t.propletInbox("p1"))"))
        #expect(p1.contains("topic write \(t.registryRequests(from: "p1"))"))
        #expect(!p1.contains("p2"))
        #expect(!p1.contains("control/manager/+"), "a proplet cannot read other proplets' reports")
        #expect(!p1.contains("topic readwrite") && !p1.contains(" #"))
        let manager = try #require(blocks.first { $0.hasPrefix("propeller-manager\n") })
        #expect(manager.contains("topic write \(t.base)/control/proplet/+/start"))
        #expect(!manager.contains("registry"))
        let proxy = try #require(blocks.first { $0.hasPrefix("propeller-proxy\n") })
        #expect(proxy.contains("topic write \(t.allBlobs)") && !proxy.contains("control/"))
    }

    /// The NATS users carry the same grants as subjects, and a user added later lands inside
    /// the users list.
    @Test func natsUsersCarryTheSameGrants() throws {
        var d = deployment("/etc/propeller")
        d.proplets = ["p1"]
        #expect(NATSUsers.subject("m/d/c/ch/control/manager/+/logs/+") == "m.d.c.ch.control.manager.*.logs.*")
        #expect(NATSUsers.subject("m/d/c/ch/registry/blobs/#") == "m.d.c.ch.registry.blobs.>")
        let text = NATSUsers.text(d, secrets: ["p1": "s1", "propeller-manager": "sm", "propeller-proxy": "sp"])
        let p1 = try #require(text.split(separator: "\n").first { $0.contains("user: \"p1\"") })
        #expect(p1.contains("password: \"s1\""))
        #expect(p1.contains("\"\(NATSUsers.subject(d.topics.report(.alive, from: "p1")))\""))
        #expect(!p1.contains("manager.*") && !p1.contains("\">\""), "a proplet cannot read other proplets' reports or everything")
        let added = try NATSUsers.adding(ACL.proplet(d.topics, id: "p2"), password: "s2", to: text)
        #expect(added.hasSuffix("  ]\n}\n") && added.contains("user: \"p2\", password: \"s2\""))
        #expect(added.components(separatedBy: "{user:").count == 5)
        #expect(throws: PropellerError.self) { _ = try NATSUsers.adding(ACL.proplet(d.topics, id: "p3"), password: "x", to: "garbage") }
    }

    @Test func listenAddressFollowsTheManagerURL() {
        #expect(ConfigText.listenAddress("http://127.0.0.1:7070") == "127.0.0.1:7070")
        #expect(ConfigText.listenAddress("https://manager.example:8443/") == "0.0.0.0:8443")
        #expect(ConfigText.listenAddress("http://localhost") == "127.0.0.1:7070")
        #expect(ConfigText.listenAddress("https://[::1]:9000") == "[::1]:9000")
    }

    func mode(_ path: String) throws -> mode_t {
        var st = stat()
        guard stat(path, &st) == 0 else { throw PropellerError(.notFound, path) }
        return st.st_mode & 0o777
    }
}
