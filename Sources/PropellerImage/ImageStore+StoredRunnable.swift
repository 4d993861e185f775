#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// What a run needs of a stored image whose rootfs is unpacked.
public struct StoredRunnable: Sendable, Equatable {
    public var manifestDigest: Digest
    /// The unpacked rootfs, shared read-only by every run of the image.
    public var rootfs: String
    public var defaults: ImageConfiguration.Config

    public init(manifestDigest: Digest, rootfs: String, defaults: ImageConfiguration.Config) {
        self.manifestDigest = manifestDigest
        self.rootfs = rootfs
        self.defaults = defaults
    }
}

extension ImageStore {
    /// The stored image named `name`, read for a warm `propeller run` with ``JSONValue`` instead
    /// of `Codable` (whose first use per type costs more here than the rest of the lookup).
    ///
    /// Nil unless the name is stored, its manifest is an image manifest (not an index), its
    /// rootfs is unpacked and every field reads as expected: the caller then takes the full path
    /// (``namedImages()``, ``image(manifest:)``, ``rootfs(for:)``), which pulls, unpacks, or says
    /// what is wrong. An image is only marked unpacked after that path has read the same
    /// immutable blobs, so both read the same values.
    public func storedRunnable(named name: String) -> StoredRunnable? {
        guard let references = readJSON(dataDirectory + "/references.json"),
              let digest = references[name]?["digest"]?.stringValue.flatMap({ try? Digest(validating: $0) }),
              access(imagesDirectory + "/" + digest.hex + "/unpacked", F_OK) == 0,
              let manifest = readJSON(content.path(for: digest)), manifest["manifests"] == nil,
              let configDigest = manifest["config"]?["digest"]?.stringValue.flatMap({ try? Digest(validating: $0) }),
              let document = readJSON(content.path(for: configDigest))
        else { return nil }
        var defaults = ImageConfiguration.Config()
        switch document["config"] {
        case nil, .null?:
            break
        case .object?:
            let section = document["config"]
            // Codable's reading of an optional field: absent or null is nil, another type an error.
            func strings(_ key: String) -> (valid: Bool, value: [String]?) {
                guard let v = section?[key], !v.isNull else { return (true, nil) }
                return (v.stringArray != nil, v.stringArray)
            }
            func string(_ key: String) -> (valid: Bool, value: String?) {
                guard let v = section?[key], !v.isNull else { return (true, nil) }
                return (v.stringValue != nil, v.stringValue)
            }
            let (entrypoint, cmd, env) = (strings("Entrypoint"), strings("Cmd"), strings("Env"))
            let (workdir, user) = (string("WorkingDir"), string("User"))
            guard entrypoint.valid, cmd.valid, env.valid, workdir.valid, user.valid else { return nil }
            defaults = ImageConfiguration.Config(User: user.value, Env: env.value, Entrypoint: entrypoint.value, Cmd: cmd.value, WorkingDir: workdir.value)
        default:
            return nil
        }
        return StoredRunnable(manifestDigest: digest, rootfs: imagesDirectory + "/" + digest.hex + "/rootfs", defaults: defaults)
    }
}

/// A small JSON file (a reference list, a manifest, a config), parsed; nil when it cannot be
/// read or parsed.
private func readJSON(_ path: String) -> JSONValue? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_size >= 0, st.st_size <= 4 << 20 else { return nil }
    guard let bytes = readExactly(fd: fd, count: Int(st.st_size)) else { return nil }
    return JSONValue(parsing: bytes)
}
