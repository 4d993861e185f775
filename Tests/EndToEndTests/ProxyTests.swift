import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

@Suite("Images through propeller proxy", .serialized,
       .enabled(if: isRoot, "requires root: proplets run containers (namespaces, cgroups, overlayfs)"))
struct ProxyTests {
    static let credentials = ("puller", "pull-secret-1")

    /// Layer blobs (and the config) a proplet stored.
    func storedBlobs(_ c: Cluster, _ proplet: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: c.dir.path + "/proplet-\(proplet)/content/blobs/sha256")) ?? []
    }

    @Test func aTaskRunsFromAnAuthenticatedRegistryThroughTheProxy() throws {
        let c = try Cluster(tag: "app:v2", credentials: Self.credentials)
        try c.startProplet("p", memory: "2G")
        let r = try c.cli(["task", "create", "via-proxy", "--image", c.image, "--wait"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText == "hi from layer two in /home/app as app with hello\n")
        #expect(c.proxyMetric("registry_fetches_total") == 3)  // config + two layers
        #expect(c.proxyMetric("manifests_resolved_total") == 1)
        // The proplet has no registry credentials at all: everything came through the proxy.
        #expect(!c.proplets["p"]!.log.contains("PROXY_REGISTRY"))
        #expect(storedBlobs(c, "p").count == 4)  // manifest, config, two layers
    }

    @Test func threePropletsStartingTheSameImageCauseOneRegistryFetchPerBlob() throws {
        let c = try Cluster(tag: "app:v2", credentials: Self.credentials)
        for id in ["a", "b", "c"] { try c.startProplet(id, memory: "2G", maxTasks: 1) }
        let ids = try ["a", "b", "c"].map { try c.create("same-\($0)", ["--proplet", $0], command: ["echo", "ok"]) }
        for id in ids {
            let done = try c.waitFor(id, state: "completed", timeout: 60)
            #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "ok\n")
        }
        #expect(c.proxyMetric("registry_fetches_total") == 3)
        for p in ["a", "b", "c"] { #expect(storedBlobs(c, p).count == 4) }
    }

    @Test func aDroppedAndACorruptedChunkAreRecovered() throws {
        let c = try Cluster(tag: "app:v2", credentials: Self.credentials, proxy: false)
        try c.startProxy(faults: "drop=1,corrupt=2")
        try c.startProplet("p", memory: "2G")
        let r = try c.cli(["task", "create", "faulty", "--image", c.image, "--wait"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("hi from layer two"))
        #expect((c.proxyMetric("resends_total") ?? 0) >= 2)
        #expect(c.proplets["p"]!.log.contains("corrupted chunk dropped"))
    }

    /// A chunk corrupted in order is caught by the blob's digest (in-order chunks are not hashed
    /// one by one), found by its checksum and asked for again, not the whole blob.
    @Test func aChunkCorruptedInOrderIsFoundAndAskedForAgain() throws {
        let c = try Cluster(tag: "app:v2", credentials: Self.credentials, proxy: false)
        try c.startProxy(faults: "corrupt=1")
        try c.startProplet("p", memory: "2G")
        let r = try c.cli(["task", "create", "faulty", "--image", c.image, "--wait"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("hi from layer two"))
        #expect(c.proplets["p"]!.log.contains("corrupted chunk dropped"))
        #expect(c.proxyMetric("resends_total") == 1, "one chunk asked for again")
        #expect(!c.proplets["p"]!.log.contains("asking the proxy again"), "found at once by the digest check, not after a stall")
    }

    @Test func aProxyKilledMidTransferAndRestartedStillDeliversTheImage() throws {
        let c = try Cluster(tag: "app:v2", credentials: Self.credentials, proxy: false)
        // The first stream loses a chunk, so the transfer is still open when the proxy dies.
        try c.startProxy(faults: "drop=3")
        try c.startProplet("p", memory: "2G")
        let id = try c.create("survives-a-proxy-crash")
        try c.waitUntil("the transfer to start", timeout: 20) { (c.proxyMetric("chunks_published_total") ?? 0) > 0 }
        c.crashProxy()
        sleep(1)
        try c.startProxy()
        let done = try c.waitFor(id, state: "completed", timeout: 60)
        #expect((done["result"] as? [String: Any])?["stdout_tail"] as? String == "hi from layer two in /home/app as app with hello\n")
    }

    @Test func aWrongRegistryPasswordFailsTheTaskAsUnauthorizedAndCachesNothing() throws {
        let c = try Cluster(tag: "app:v2", credentials: Self.credentials, proxy: false)
        try c.startProxy(password: "wrong-password")
        try c.startProplet("p", memory: "2G")
        let r = try c.cli(["task", "create", "denied", "--image", c.image, "--wait"])
        #expect(r.status == 125)
        #expect(r.stderrText.lowercased().contains("unauthorized"), "\(r.stderrText)")
        #expect(!r.stderrText.contains("wrong-password"))
        let proxyBlobs = (try? FileManager.default.contentsOfDirectory(atPath: c.dir.path + "/proxy-data/proxy/blobs/sha256")) ?? []
        #expect(proxyBlobs.isEmpty)
        #expect(storedBlobs(c, "p").isEmpty)
    }
}
