import Foundation
import PropellerCore
@testable import PropellerImage
import PropellerTestSupport
import Testing

/// What a registry sends: manifests, indexes, configs and auth challenges, fuzzed (see ``Fuzzer``).
@Suite("Fuzz: OCI documents and registry challenges")
struct FuzzImageTests {
    @Test func ociDocuments() throws {
        let digest = "sha256:" + String(repeating: "1", count: 64)
        let seeds = [
            #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(digest)","size":12},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\#(digest)","size":99}]}"#,
            #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(digest)","size":7,"platform":{"architecture":"amd64","os":"linux"}}]}"#,
            #"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","echo"],"Env":["A=b"],"WorkingDir":"/w","User":"1000:1000"},"rootfs":{"type":"layers","diff_ids":["\#(digest)"]}}"#,
        ].map { Array($0.utf8) }
        let store = try TempDirectory("propeller-fuzz-image")
        defer { store.remove() }
        Fuzzer.run("oci-documents", seeds: seeds) { bytes in
            let data = Data(bytes)
            if let manifest = try? JSONDecoder().decode(ImageManifest.self, from: data) {
                _ = try? ImageLimits.check(manifest, reference: "fuzz", storeDirectory: store.path)
            }
            if let index = try? JSONDecoder().decode(ImageIndex.self, from: data) { _ = try? index.manifestForThisPlatform("fuzz") }
            if let config = try? JSONDecoder().decode(ImageConfiguration.self, from: data) { _ = try? config.command(arguments: []) }
        }
    }

    @Test func authChallenges() throws {
        let seeds = [#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull""#, #"Basic realm="r""#,
                     "https://127.0.0.1:5000/token?x=1"].map { Array($0.utf8) }
        let ref = try ImageReference(parsing: "registry.example:5000/app:v1")
        Fuzzer.run("auth-challenges", seeds: seeds) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            _ = RegistryClient.parseChallenge(text)
            _ = RegistryClient.mayReceiveCredentials(realm: text, registry: ref)
        }
    }
}
