import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// `propeller run --image` against real docker-registry processes on loopback.
@Suite("Pulling from a registry", .enabled(if: isRoot, "requires root: umoci, namespaces and overlayfs"))
struct RegistryPullTests {
    let context: ImageTestContext
    var layout: String { context.layout }
    var data: TempDirectory { context.data }

    init() throws { context = try ImageTestContext() }

    func run(_ image: String, _ args: [String] = [], env: [String: String] = [:]) throws -> CLIResult {
        try propeller(["run", "--data-dir", data.path, "--image", image] + args, environment: env)
    }

    @Test func pullsANonLatestMultiLayerImageAndRunsIt() throws {
        defer { data.remove() }
        let registry = try context.registry(holding: "team/app:v2")
        defer { registry.stop() }
        let r = try run("\(registry.address)/team/app:v2")
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText == "hi from layer two in /home/app as app with hello\n")
        // A stored image runs without the registry (--pull missing, the default) ...
        registry.stop()
        let again = try run("\(registry.address)/team/app:v2", ["--", "cat", "/etc/motd"])
        #expect(again.status == 0, "\(again.stderrText)")
        #expect(again.stdoutText == "layer two\n")
        // ... but --pull always asks the registry, which is gone.
        let always = try run("\(registry.address)/team/app:v2", ["--pull", "always", "--", "true"])
        #expect(always.status == 125)
        // --pull never refuses images it does not have.
        let never = try run("\(registry.address)/team/other:v1", ["--pull", "never", "--", "true"])
        #expect(never.status == 125)
        #expect(never.stderrText.contains("--pull never"))
    }

    @Test func unknownTagsAndRepositoriesAreClearErrors() throws {
        defer { data.remove() }
        let registry = try context.registry(holding: "app:v1")
        defer { registry.stop() }
        let tag = try run("\(registry.address)/app:nope")
        #expect(tag.status == 125)
        #expect(tag.stderrText.contains("manifest nope of app not found"), "\(tag.stderrText)")
        let repo = try run("\(registry.address)/ghost:v1")
        #expect(repo.status == 125)
        #expect(repo.stderrText.contains("not found"))
        let bad = try run("\(registry.address)/UPPER:v1")
        #expect(bad.status == 125)
        #expect(bad.stderrText.contains("invalid image reference"))
    }

    @Test func basicAuthWithRightWrongAndNoCredentials() throws {
        defer { data.remove() }
        let registry = try context.registry(holding: "private/app:v1", credentials: ("alice", "s3cret-pw"))
        defer { registry.stop() }
        let image = "\(registry.address)/private/app:v1"

        let none = try run(image, env: ["HOME": data.path])
        #expect(none.status == 125)
        #expect(none.stderrText.contains("authentication required"), "\(none.stderrText)")

        let wrong = try run(image, env: ["PROXY_REGISTRY_USERNAME": "alice", "PROXY_REGISTRY_PASSWORD": "wrong-pw"])
        #expect(wrong.status == 125)
        #expect(wrong.stderrText.contains("authentication failed"), "\(wrong.stderrText)")
        #expect(!wrong.stderrText.contains("wrong-pw"))

        let right = try run(image, env: ["PROXY_REGISTRY_USERNAME": "alice", "PROXY_REGISTRY_PASSWORD": "s3cret-pw"])
        #expect(right.status == 0, "\(right.stderrText)")
        #expect(!right.stderrText.contains("s3cret-pw"))

        // The same through flags: the user name and a password file (no stored image: --pull always).
        writeFile(data.path + "/pw", "s3cret-pw\n")
        let flags = try run(image, ["--pull", "always", "--registry-username", "alice", "--registry-password-file", data.path + "/pw", "--", "true"])
        #expect(flags.status == 0, "\(flags.stderrText)")
    }

    @Test func dockerConfigCredentialsAreUsed() throws {
        defer { data.remove() }
        let registry = try context.registry(holding: "app:v1", credentials: ("bob", "hunter22"))
        defer { registry.stop() }
        let config = data.path + "/docker"
        mkdirs(config)
        let auth = Data("bob:hunter22".utf8).base64EncodedString()
        writeFile(config + "/config.json", #"{"auths": {"\#(registry.address)": {"auth": "\#(auth)"}}}"#)
        let r = try run("\(registry.address)/app:v1", ["--", "cat", "/etc/motd"], env: ["DOCKER_CONFIG": config])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText == "layer two\n")
    }

    /// The largest blob (the first layer: found before anything is unpacked) or the last layer
    /// (found while the first one is being unpacked, the download running beside it).
    @Test(arguments: [false, true])
    func aCorruptedBlobInTheRegistryIsRefusedAndNotCached(lastLayer: Bool) throws {
        defer { data.remove() }
        let registry = try context.registry(holding: "app:v1")
        defer { registry.stop() }
        let blobs = try FileManager.default.subpathsOfDirectory(atPath: registry.storage).filter { $0.hasSuffix("/data") }
        let sized = blobs.map { ($0, (try? FileManager.default.attributesOfItem(atPath: registry.storage + "/" + $0)[.size] as? Int) ?? 0) }
        var victim = try #require(sized.max { $0.1 < $1.1 })
        if lastLayer {
            let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))) as? [String: Any]
            let top = try #require(((index?["manifests"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst(7))
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/blobs/sha256/" + top))) as? [String: Any]
            let last = try #require(((manifest?["layers"] as? [[String: Any]])?.last?["digest"] as? String)?.dropFirst(7))
            victim = try #require(sized.first { $0.0.hasSuffix("/" + last + "/data") })
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: registry.storage + "/" + victim.0))
        bytes[bytes.count / 2] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: registry.storage + "/" + victim.0))
        let r = try run("\(registry.address)/app:v1")
        #expect(r.status == 125)
        #expect(r.stderrText.contains("digest mismatch"), "\(r.stderrText)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/content/ingest")) == [])
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/images"))?.filter { !$0.hasSuffix(".lock") } == [],
                "no rootfs, not even half of one")
    }
}

@Suite("propeller image pull, ls, rm, prune", .enabled(if: isRoot, "requires root: umoci builds the fixture image"))
struct ImageCommandTests {
    let context: ImageTestContext
    init() throws { context = try ImageTestContext() }

    @Test func pullListRemovePrune() throws {
        let data = context.data
        defer { data.remove() }
        let registry = try context.registry(holding: "app:v3")
        defer { registry.stop() }
        let image = "\(registry.address)/app:v3"
        let pulled = try propeller(["image", "pull", "--data-dir", data.path, image])
        #expect(pulled.status == 0, "\(pulled.stderrText)")
        // Not on a terminal: a plain line per layer stored and one for the pull.
        let lines = pulled.stderrText.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("pulling \(image): layer 1 of ") && $0.contains(" stored, ") }, "\(pulled.stderrText)")
        #expect(lines.last?.hasPrefix("pulled \(image): ") == true && lines.last?.contains(" in ") == true, "\(pulled.stderrText)")
        let digest = pulled.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(digest.hasPrefix("sha256:"))
        #expect(FileManager.default.fileExists(atPath: data.path + "/images/" + digest.dropFirst(7) + "/rootfs/bin/busybox"))

        let listed = try propeller(["image", "ls", "--data-dir", data.path, "--json"])
        let entries = try #require(try JSONSerialization.jsonObject(with: listed.stdout) as? [[String: Any]])
        #expect(entries.count == 1)
        #expect(entries.first?["name"] as? String == image)
        #expect(entries.first?["digest"] as? String == digest)

        #expect(try propeller(["image", "rm", "--data-dir", data.path, image]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: data.path + "/images/" + digest.dropFirst(7)))
        // -q: nothing; on a terminal: a bar redrawn in place, then the summary.
        let quiet = try propeller(["image", "pull", "-q", "--data-dir", data.path, image])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderrText)")
        #expect(try propeller(["image", "rm", "--data-dir", data.path, image]).status == 0)
        _ = try propeller(["image", "prune", "--data-dir", data.path])
        let (status, shown) = try runOnTerminal(propellerBinary, ["image", "pull", "--data-dir", data.path, image])
        #expect(status == 0, "\(shown)")
        #expect(shown.contains("\r\u{1B}[Kpulling \(image) ["), "\(shown)")
        #expect(shown.contains("pulled \(image): ") && !shown.contains("layer 1 of"), "\(shown)")
        #expect(try propeller(["image", "rm", "--data-dir", data.path, image]).status == 0)

        let pruned = try propeller(["image", "prune", "--data-dir", data.path])
        #expect(pruned.stdoutText.hasPrefix("freed "))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: data.path + "/content/blobs/sha256")) == [])
        let missing = try propeller(["image", "rm", "--data-dir", data.path, image])
        #expect(missing.status == 1)
        #expect(missing.stderrText.contains("no image named"))
    }
}

@Suite("Pulling through the Bearer token flow", .enabled(if: isRoot, "requires root: umoci builds the fixture image"))
struct BearerPullTests {
    let context: ImageTestContext
    init() throws { context = try ImageTestContext() }

    @Test func tokenChallengeIsAnsweredAndTokensAreCached() throws {
        let data = context.data
        defer { data.remove() }
        let tokens = try TokenServer(username: "carol", password: "t0ken-pw")
        defer { tokens.stop() }
        let registry = try RegistryServer(tokenAuth: tokens.registryAuthConfig)
        defer { registry.stop() }
        try registry.push(layout: context.layout, tag: "app", as: "secure/app:v1", credentials: ("carol", "t0ken-pw"))
        let pushTokens = tokens.issued
        let image = "\(registry.address)/secure/app:v1"

        let ok = try propeller(["run", "--data-dir", data.path, "--image", image, "--", "cat", "/etc/motd"],
                               environment: ["PROXY_REGISTRY_USERNAME": "carol", "PROXY_REGISTRY_PASSWORD": "t0ken-pw"])
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(ok.stdoutText == "layer two\n")
        // One token for the whole pull (manifest, config and both layers): cached per scope.
        #expect(tokens.issued - pushTokens == 1)

        let wrong = try propeller(["run", "--data-dir", data.path, "--pull", "always", "--image", image],
                                  environment: ["PROXY_REGISTRY_USERNAME": "carol", "PROXY_REGISTRY_PASSWORD": "nope"])
        #expect(wrong.status == 125)
        #expect(wrong.stderrText.contains("token service refused"), "\(wrong.stderrText)")
        #expect(!wrong.stderrText.contains("nope"))
    }
}
