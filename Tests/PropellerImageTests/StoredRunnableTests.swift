import Foundation
import PropellerCore
@testable import PropellerImage
import PropellerTestSupport
import Testing

/// `propeller run`'s quick lookup of a stored image reads the same as the full (Codable) path,
/// and steps aside whenever it is not sure.
struct StoredRunnableTests {
    /// A one-layer image with `config` (raw JSON for the config's "config" section), stored
    /// under `name` and unpacked unless told not to.
    func store(config section: String?, name: String = "127.0.0.1:5000/app:v1", unpack: Bool = true) throws -> (ImageStore, Image, TempDirectory) {
        let dir = try TempDirectory("propeller-quick")
        let store = try ImageStore(dataDirectory: dir.path + "/data")
        var tar = TarBuilder()
        tar.dir("etc")
        tar.file("etc/motd", "hi\n")
        let layerPath = dir.path + "/layer.tar.gz"
        let diffID = try tar.write(to: layerPath)
        let layerDigest = try TarBuilder.sha256sum(layerPath)
        _ = try store.content.ingest(file: layerPath, as: layerDigest)
        let size = try FileManager.default.attributesOfItem(atPath: layerPath)[.size] as? Int ?? 0
        let configJSON = #"{"architecture":"amd64","os":"linux","# + (section.map { #""config":\#($0),"# } ?? "")
            + #""rootfs":{"type":"layers","diff_ids":["\#(diffID)"]}}"#
        let configDigest = Digest(sha256: Checksum.sha256(Array(configJSON.utf8)[...]))
        try store.store(Data(configJSON.utf8), as: configDigest)
        let manifestJSON = #"{"schemaVersion":2,"mediaType":"\#(MediaType.ociManifest)","config":{"mediaType":"\#(MediaType.ociConfig)","digest":"\#(configDigest)","size":\#(configJSON.utf8.count)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\#(layerDigest)","size":\#(size)}]}"#
        let manifestDigest = Digest(sha256: Checksum.sha256(Array(manifestJSON.utf8)[...]))
        try store.store(Data(manifestJSON.utf8), as: manifestDigest)
        let image = try store.image(manifest: manifestDigest)
        try store.tag(image, as: name)
        if unpack { _ = try store.rootfs(for: image) }
        return (store, image, dir)
    }

    @Test(arguments: [
        #"{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo \"é\" \\n"],"Env":["A=1","B=two words"],"WorkingDir":"/w","User":"app"}"#,
        #"{"Cmd":["true"],"Env":null,"WorkingDir":"","User":null,"Labels":{"x":"y"},"ExposedPorts":{"80/tcp":{}}}"#,
        #"{}"#, "null", nil,
    ])
    func readsWhatCodableReads(section: String?) throws {
        let (store, image, dir) = try store(config: section)
        defer { dir.remove() }
        let quick = try #require(store.storedRunnable(named: "127.0.0.1:5000/app:v1"))
        #expect(quick.manifestDigest == image.manifestDigest)
        #expect(quick.rootfs == (try store.rootfs(for: image)))
        #expect(quick.defaults == image.config.runDefaults)
        #expect(FileManager.default.fileExists(atPath: quick.rootfs + "/etc/motd"))
    }

    @Test func stepsAsideWhenNotUnpackedOrNotStored() throws {
        let (store, _, dir) = try store(config: #"{"Cmd":["true"]}"#, unpack: false)
        defer { dir.remove() }
        #expect(store.storedRunnable(named: "127.0.0.1:5000/app:v1") == nil, "not unpacked yet: the full path unpacks it")
        #expect(store.storedRunnable(named: "127.0.0.1:5000/other:v1") == nil)
    }

    @Test(arguments: [#"{"Cmd":"true"}"#, #"{"Env":[1]}"#, #"{"User":7}"#, #"["not","an","object"]"#])
    func stepsAsideWhenAFieldIsNotWhatCodableAccepts(section: String) throws {
        // Such a config fails the full path's decode; an image is never unpacked with one, so
        // this marks it unpacked by hand to see the quick path refuse it by itself.
        let (store, image, dir) = try store(config: #"{"Cmd":["true"]}"#, unpack: true)
        defer { dir.remove() }
        let configJSON = #"{"config":\#(section),"rootfs":{"type":"layers","diff_ids":[]}}"#
        let configDigest = Digest(sha256: Checksum.sha256(Array(configJSON.utf8)[...]))
        try store.store(Data(configJSON.utf8), as: configDigest)
        let manifestJSON = #"{"schemaVersion":2,"config":{"mediaType":"x","digest":"\#(configDigest)","size":1},"layers":[]}"#
        let manifestDigest = Digest(sha256: Checksum.sha256(Array(manifestJSON.utf8)[...]))
        try store.store(Data(manifestJSON.utf8), as: manifestDigest)
        let unpacked = store.dataDirectory + "/images/" + manifestDigest.hex
        try FileManager.default.createDirectory(atPath: unpacked + "/rootfs", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: unpacked + "/unpacked", contents: nil)
        try store.tag(Image(manifestDigest: manifestDigest, manifest: image.manifest, config: image.config), as: "127.0.0.1:5000/bad:v1")
        #expect(store.storedRunnable(named: "127.0.0.1:5000/bad:v1") == nil)
        #expect(throws: PropellerError.self) { try store.image(manifest: manifestDigest) }
    }
}
