#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PropellerCore

/// Media types Propeller reads (OCI and Docker names).
public enum MediaType {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

    /// Layer media types that unpack as tar, with or without gzip/zstd compression.
    public static let layers: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
    ]

    public static let indexes: Set<String> = [ociIndex, dockerManifestList]
    public static let manifests: Set<String> = [ociManifest, dockerManifest]
}

public struct Platform: Codable, Hashable, Sendable {
    public var architecture: String
    public var os: String
    public var variant: String?

    /// This machine's platform in OCI terms (`linux/amd64`, `linux/arm64`).
    public static var current: Platform {
        #if arch(x86_64)
        return Platform(architecture: "amd64", os: "linux")
        #elseif arch(arm64)
        return Platform(architecture: "arm64", os: "linux", variant: "v8")
        #else
        return Platform(architecture: "unknown", os: "linux")
        #endif
    }
}

public struct Descriptor: Codable, Hashable, Sendable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var annotations: [String: String]?
    public var platform: Platform?
}

public struct ImageManifest: Codable, Hashable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
}

public struct ImageIndex: Codable, Hashable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [Descriptor]

    /// The manifest to run here: the one for this platform, or the only one when an index has a
    /// single manifest without platform. `what` names the index in the error.
    public func manifestForThisPlatform(_ what: String) throws -> Descriptor {
        if let chosen = manifest(for: .current) ?? (manifests.count == 1 && manifests[0].platform == nil ? manifests[0] : nil) {
            return chosen
        }
        let platforms = manifests.compactMap { $0.platform.map { "\($0.os)/\($0.architecture)" } }
        throw PropellerError(.notFound, "\(what) has no image for \(Platform.current.os)/\(Platform.current.architecture) (it has \(platforms.joined(separator: ", ")))")
    }

    /// The manifest for `platform` (variant ignored when the index gives none).
    public func manifest(for platform: Platform) -> Descriptor? {
        manifests.first { d in
            guard let p = d.platform else { return false }
            return p.os == platform.os && p.architecture == platform.architecture
                && (p.variant == nil || platform.variant == nil || p.variant == platform.variant)
        }
    }
}

/// The parts of an image config a runtime uses.
public struct ImageConfiguration: Codable, Hashable, Sendable {
    public struct Config: Codable, Hashable, Sendable {
        public var User: String?
        public var Env: [String]?
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?
    }

    public struct RootFS: Codable, Hashable, Sendable {
        public var type: String
        public var diff_ids: [Digest]
    }

    public var architecture: String?
    public var os: String?
    public var config: Config?
    public var rootfs: RootFS
}

extension JSONDecoder {
    /// Decodes `T` from `data`, with errors that say which document and which field.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw PropellerError(.invalidArgument, "\(what): missing \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw PropellerError(.invalidArgument, "\(what): wrong type at \(path)")
        } catch let error as PropellerError {
            throw PropellerError(error.code, "\(what): \(error.message)")
        } catch {
            throw PropellerError(.invalidArgument, "\(what): not valid JSON")
        }
    }
}
