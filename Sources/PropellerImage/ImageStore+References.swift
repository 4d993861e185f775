#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PropellerCore

/// Names of stored images (`127.0.0.1:5000/app:v2`, `oci:/path:tag`) → manifest digests, kept in
/// `<data>/references.json` and changed under an exclusive lock.
extension ImageStore {
    /// One named image.
    public struct NamedImage: Codable, Sendable, Hashable {
        public var name: String
        public var digest: Digest
        public var pulledAt: Double
    }

    private var referencesPath: String { dataDirectory + "/references.json" }

    private func withReferences<T>(_ body: (inout [String: NamedImage]) throws -> T) throws -> T {
        let lock = open(dataDirectory + "/references.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw PropellerError(.systemCall, "lock \(dataDirectory)/references.lock: \(errnoName(errno))") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 && errno == EINTR {}
        var refs: [String: NamedImage] = [:]
        if let data = try? Data(contentsOf: URL(fileURLWithPath: referencesPath)) {
            refs = try JSONDecoder.decode([String: NamedImage].self, from: data, what: referencesPath)
        }
        let before = refs
        let result = try body(&refs)
        if refs != before {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let temp = referencesPath + ".tmp"
            try encoder.encode(refs).write(to: URL(fileURLWithPath: temp))
            guard rename(temp, referencesPath) == 0 else { throw PropellerError(.systemCall, "write \(referencesPath): \(errnoName(errno))") }
        }
        return result
    }

    /// Records that `name` now means `image`.
    public func tag(_ image: Image, as name: String) throws {
        try withReferences { $0[name] = NamedImage(name: name, digest: image.manifestDigest, pulledAt: WallClock.now()) }
    }

    /// Every named image, by name.
    public func namedImages() throws -> [NamedImage] {
        try withReferences { refs in refs.values.sorted { $0.name < $1.name } }
    }

    /// Forgets `name`; the image's unpacked rootfs goes too when no other name uses it.
    /// Blobs stay until ``prune()``.
    public func remove(name: String) throws {
        try withReferences { refs in
            guard let removed = refs.removeValue(forKey: name) else {
                throw PropellerError(.notFound, "no image named \(name) (see propeller image ls)")
            }
            if !refs.values.contains(where: { $0.digest == removed.digest }) {
                removeTree(imagesDirectory + "/" + removed.digest.hex)
                unlink(imagesDirectory + "/" + removed.digest.hex + ".lock")
            }
        }
    }

    /// Removes blobs and unpacked rootfs directories no named image uses, and leftovers of
    /// interrupted pulls and unpacks. Returns the number of bytes freed.
    @discardableResult
    public func prune() throws -> UInt64 {
        try withReferences { refs in
            var keep = Set<Digest>()
            var keepImages = Set<String>()
            for named in refs.values {
                keep.insert(named.digest)
                keepImages.insert(named.digest.hex)
                if let image = try? image(manifest: named.digest) {
                    keep.insert(image.manifestDigest)
                    keepImages.insert(image.manifestDigest.hex)
                    keep.insert(image.manifest.config.digest)
                    for layer in image.manifest.layers { keep.insert(layer.digest) }
                }
            }
            var freed: UInt64 = 0
            for digest in content.list() where !keep.contains(digest) {
                freed += content.size(of: digest) ?? 0
                try content.remove(digest)
            }
            for entry in directoryEntries(content.root + "/ingest") { removeTree(content.root + "/ingest/" + entry) }
            for entry in directoryEntries(imagesDirectory) {
                let hex = entry.hasSuffix(".lock") ? String(entry.dropLast(5)) : entry
                if entry.hasPrefix(".unpack-") || !keepImages.contains(hex) { removeTree(imagesDirectory + "/" + entry) }
            }
            return freed
        }
    }
}
