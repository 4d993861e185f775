#if canImport(Glibc)
import Glibc
#endif
import PropellerCore

/// What an image may claim before a byte of it is downloaded: a registry (or a manifest that
/// names its own sizes) is not trusted to be reasonable. The unpacker bounds what the layers
/// expand to; these bound what is fetched.
public enum ImageLimits {
    /// An image config is a small JSON document.
    public static let maxConfigBytes: Int64 = 8 << 20
    /// Layers in one image (Docker's overlay driver stops at 127).
    public static let maxLayers = 128
    /// All layers together, compressed.
    public static let maxImageBytes: Int64 = 64 << 30
    /// Free space left on the store's filesystem after the layers.
    public static let reserveBytes: UInt64 = 64 << 20

    /// Refuses a manifest whose sizes are out of bounds, or whose layers do not fit in the free
    /// space of `storeDirectory`'s filesystem (with ``reserveBytes`` to spare).
    public static func check(_ manifest: ImageManifest, reference: String, storeDirectory: String) throws {
        guard manifest.config.size >= 0, manifest.config.size <= maxConfigBytes else {
            throw PropellerError(.invalidArgument, "\(reference): the image config claims \(manifest.config.size) bytes (at most \(maxConfigBytes))")
        }
        guard manifest.layers.count <= maxLayers else {
            throw PropellerError(.invalidArgument, "\(reference): \(manifest.layers.count) layers (at most \(maxLayers))")
        }
        var total: Int64 = 0
        for layer in manifest.layers {
            guard layer.size >= 0, layer.size <= maxImageBytes - total else {
                throw PropellerError(.invalidArgument, "\(reference): the layers claim more than \(maxImageBytes >> 30) GiB together")
            }
            total += layer.size
        }
        var fs = statvfs()
        if statvfs(storeDirectory, &fs) == 0 {
            let free = UInt64(fs.f_bavail) &* UInt64(fs.f_frsize)
            guard UInt64(total) + reserveBytes <= free else {
                throw PropellerError(.resourceExhausted, "\(reference): its layers need \(total >> 20) MiB and \(storeDirectory) has \(free >> 20) MiB free")
            }
        }
    }
}
