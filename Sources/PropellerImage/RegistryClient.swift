#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PropellerCore
import Synchronization

/// Username and password (or an identity token) for one registry. Never logged, never put in
/// an error message.
public struct RegistryCredentials: Sendable, Hashable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    var basicHeader: String {
        "Authorization: Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
    }

    /// Credentials for `registry` from `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`):
    /// its `auths` entry's `auth` (base64 `user:password`) or `username`/`password`.
    public static func fromDockerConfig(registry: String, environment: [String: String]) -> RegistryCredentials? {
        let dir = environment["DOCKER_CONFIG"] ?? ((environment["HOME"] ?? "/root") + "/.docker")
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")),
              let object = try? JSONDecoder().decode(DockerConfig.self, from: data) else { return nil }
        let keys = registry == "docker.io"
            ? ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
            : [registry, "https://" + registry, "http://" + registry]
        for key in keys {
            guard let entry = object.auths?[key] else { continue }
            if let auth = entry.auth, let decoded = Data(base64Encoded: auth), let text = String(data: decoded, encoding: .utf8),
               let colon = text.firstIndex(of: ":") {
                return RegistryCredentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
            }
            if let u = entry.username, let p = entry.password { return RegistryCredentials(username: u, password: p) }
        }
        return nil
    }

    private struct DockerConfig: Decodable {
        struct Entry: Decodable { var auth: String?; var username: String?; var password: String? }
        var auths: [String: Entry]?
    }
}

/// Talks to OCI distribution registries: manifests and blobs, anonymous, HTTP Basic, and the
/// Bearer token challenge (tokens cached per scope until they expire).
public final class RegistryClient: Sendable {
    /// Credentials per registry host (as written in references).
    let credentials: @Sendable (String) -> RegistryCredentials?
    /// A bearer token given directly (PROXY_REGISTRY_TOKEN), sent to `tokenRegistry` only.
    let staticToken: String?
    let tokenRegistry: String?
    /// Hosts spoken to over plain HTTP besides loopback ones.
    let insecureRegistries: Set<String>
    let transport = HTTPTransport()
    private let tokens = Mutex<[String: (token: String, expires: ContinuousClock.Instant)]>([:])
    /// Registries that answered with a Basic challenge: send Basic up front next time.
    private let basicHosts = Mutex<Set<String>>([])

    /// - Parameters:
    ///   - credentials: the credentials for a registry host, or nil; asked with the host as a
    ///     reference names it, so binding them to hosts is the caller's (see `ImageOptions`).
    ///   - token: a bearer token for `tokenRegistry` only (no other registry is sent it).
    public init(credentials: @escaping @Sendable (String) -> RegistryCredentials? = { _ in nil }, token: String? = nil,
                tokenRegistry: String? = nil, insecureRegistries: Set<String> = []) {
        self.credentials = credentials
        self.staticToken = tokenRegistry == nil ? nil : token
        self.tokenRegistry = tokenRegistry
        self.insecureRegistries = insecureRegistries
    }

    static let manifestAccept = "Accept: " + [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList].joined(separator: ", ")

    func baseURL(_ ref: ImageReference) -> String {
        let scheme = ref.isLoopback || insecureRegistries.contains(ref.registry) ? "http" : "https"
        return "\(scheme)://\(ref.apiHost)/v2/\(ref.repository)"
    }

    /// A manifest or index: its bytes, media type and digest (computed, and checked against a
    /// pinned digest).
    public func manifest(_ ref: ImageReference, reference: String? = nil) throws -> (data: Data, mediaType: String, digest: Digest) {
        var body = Data()
        let what = reference ?? ref.manifestReference
        let response = try authorizedRequest(ref, "GET", baseURL(ref) + "/manifests/" + what, headers: [Self.manifestAccept]) { status, bytes in
            guard (200..<300).contains(status) else { return }
            body.append(contentsOf: bytes)
            if body.count > 8 << 20 { throw PropellerError(.invalidArgument, "manifest of \(ref) is larger than 8 MiB") }
        }
        try check(response, ref, what: "manifest \(what)")
        let digest = Digest(sha256: SHA256.hash(body))
        if let pinned = try? Digest(validating: what), pinned != digest {
            throw PropellerError(.invalidArgument, "manifest of \(ref): digest mismatch, the registry sent \(digest)")
        }
        let mediaType = response.headers["content-type"].map { String($0.prefix { $0 != ";" }) }
            ?? ((try? JSONDecoder().decode(ImageManifest.self, from: body))?.mediaType ?? MediaType.ociManifest)
        return (body, mediaType, digest)
    }

    /// Streams a blob into `store`, checking size and digest; retries transient failures and
    /// resumes with a Range request where the registry allows it.
    public func fetchBlob(_ ref: ImageReference, _ digest: Digest, size: Int64?, into store: ContentStore, received: ((UInt64) -> Void)? = nil) throws {
        if store.contains(digest) { return }
        var writer = try store.writer(for: digest, size: size.map { UInt64(max(0, $0)) })
        var attempt = 0
        while true {
            attempt += 1
            let resumeFrom = writer.written
            var restart = false
            do {
                let response = try authorizedRequest(ref, "GET", baseURL(ref) + "/blobs/" + digest.description, headers: [],
                                                     range: resumeFrom > 0 ? "\(resumeFrom)-" : nil) { status, bytes in
                    if resumeFrom > 0 && status == 200 { restart = true; return }
                    guard (200..<300).contains(status) else { return }
                    try writer.write(bytes)
                    received?(writer.written)
                }
                if restart {
                    writer = try store.writer(for: digest, size: size.map { UInt64(max(0, $0)) })
                    continue
                }
                try check(response, ref, what: "blob \(digest)")
                _ = try writer.commit()
                return
            } catch let error as PropellerError where error.code == .systemCall || error.code == .resourceExhausted {
                // Transport errors and 5xx: try again a few times.
                if attempt >= 4 { throw error }
                usleep(UInt32(200_000 * attempt))
            }
        }
    }

    private func check(_ response: HTTPTransport.Response, _ ref: ImageReference, what: String) throws {
        switch response.status {
        case 200..<300: return
        case 401: throw PropellerError(.permissionDenied, "registry \(ref.registry): authentication failed for \(ref.repository) (401 Unauthorized)")
        case 403: throw PropellerError(.permissionDenied, "registry \(ref.registry): access to \(ref.repository) denied (403 Forbidden)")
        case 404: throw PropellerError(.notFound, "registry \(ref.registry): \(what) of \(ref.repository) not found")
        case 500..<600: throw PropellerError(.resourceExhausted, "registry \(ref.registry): \(what): server error \(response.status)")
        default: throw PropellerError(.invalidArgument, "registry \(ref.registry): \(what): unexpected status \(response.status)")
        }
    }

    /// Sends a request with the right credentials, answering one authentication challenge.
    private func authorizedRequest(_ ref: ImageReference, _ method: String, _ url: String, headers: [String], range: String? = nil,
                                   onBody: (Int, UnsafeRawBufferPointer) throws -> Void) throws -> HTTPTransport.Response {
        let scope = "repository:\(ref.repository):pull"
        var auth = authorization(ref, scope: scope)
        var challenged = false
        while true {
            let response = try transport.send(method, url, headers: headers + (auth.map { [$0] } ?? []), range: range) { status, bytes in
                if status == 401 && !challenged { return }  // the challenge's body
                try onBody(status, bytes)
            }
            if response.status == 500 || response.status == 502 || response.status == 503 || response.status == 504 {
                throw PropellerError(.systemCall, "registry \(ref.registry): server error \(response.status)")
            }
            guard response.status == 401, !challenged, let challenge = response.headers["www-authenticate"] else { return response }
            challenged = true
            if challenge.lowercased().hasPrefix("basic") {
                guard let creds = staticCredentials(ref) else {
                    throw PropellerError(.permissionDenied, "registry \(ref.registry): authentication required for \(ref.repository), and no credentials were given")
                }
                basicHosts.withLock { _ = $0.insert(ref.registry) }
                auth = creds.basicHeader
            } else if challenge.lowercased().hasPrefix("bearer") {
                auth = "Authorization: Bearer " + (try bearerToken(ref, challenge: challenge, defaultScope: scope))
            } else {
                return response
            }
        }
    }

    private func staticCredentials(_ ref: ImageReference) -> RegistryCredentials? { credentials(ref.registry) }

    private func authorization(_ ref: ImageReference, scope: String) -> String? {
        if let staticToken, ref.registry == tokenRegistry { return "Authorization: Bearer " + staticToken }
        if basicHosts.withLock({ $0.contains(ref.registry) }), let creds = staticCredentials(ref) { return creds.basicHeader }
        let key = ref.registry + " " + scope
        if let cached = tokens.withLock({ $0[key] }), cached.expires > ContinuousClock.now { return "Authorization: Bearer " + cached.token }
        return nil
    }

    /// The Bearer flow: `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` → GET realm.
    private func bearerToken(_ ref: ImageReference, challenge: String, defaultScope: String) throws -> String {
        let params = Self.parseChallenge(challenge)
        guard let realm = params["realm"], realm.hasPrefix("https://") || realm.hasPrefix("http://") else {
            throw PropellerError(.invalidArgument, "registry \(ref.registry): Bearer challenge without a usable realm")
        }
        let scope = params["scope"] ?? defaultScope
        var query: [String] = []
        if let service = params["service"] { query.append("service=" + Self.percentEncode(service)) }
        query.append("scope=" + Self.percentEncode(scope))
        let url = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
        var body = Data()
        // Basic credentials go to the realm only when it is the registry's own host, over HTTPS
        // (or plain HTTP on loopback, as the registry itself): a registry must not be able to
        // name a realm elsewhere and collect them.
        let headers = Self.mayReceiveCredentials(realm: realm, registry: ref) ? (staticCredentials(ref).map { [$0.basicHeader] } ?? []) : []
        let response = try transport.send("GET", url, headers: headers) { status, bytes in
            body.append(contentsOf: bytes)
            if body.count > 1 << 20 { throw PropellerError(.invalidArgument, "token response too large") }
        }
        guard response.status == 200 else {
            throw PropellerError(.permissionDenied, "registry \(ref.registry): the token service refused \(scope) (\(response.status))")
        }
        struct TokenResponse: Decodable { var token: String?; var access_token: String?; var expires_in: Int? }
        guard let parsed = try? JSONDecoder().decode(TokenResponse.self, from: body), let token = parsed.token ?? parsed.access_token else {
            throw PropellerError(.invalidArgument, "registry \(ref.registry): the token service answered without a token")
        }
        let lifetime = max(30, parsed.expires_in ?? 60) - 10
        tokens.withLock { $0[ref.registry + " " + defaultScope] = (token, ContinuousClock.now + .seconds(lifetime)) }
        return token
    }

    /// Whether the token realm `realm` may be sent `registry`'s Basic credentials: the same host
    /// (any port), over HTTPS, or over HTTP when the registry is itself on loopback; Docker Hub's
    /// own auth server for docker.io.
    static func mayReceiveCredentials(realm: String, registry ref: ImageReference) -> Bool {
        let https = realm.hasPrefix("https://")
        guard https || realm.hasPrefix("http://") else { return false }
        let rest = realm.dropFirst(https ? 8 : 7)
        let authority = String(rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" })
        guard !authority.contains("@") else { return false }
        let realmHost = ImageReference.hostName(authority).lowercased()
        if ref.registry == "docker.io" { return https && realmHost == "auth.docker.io" }
        guard realmHost == ImageReference.hostName(ref.apiHost).lowercased() else { return false }
        return https || ref.isLoopback
    }

    /// `Bearer realm="https://auth",service="reg",scope="repository:a:pull"` → dictionary.
    static func parseChallenge(_ header: String) -> [String: String] {
        var out: [String: String] = [:]
        var rest = Substring(header.drop { $0 != " " }.dropFirst())
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].lowercased()
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                while let c = rest.first, c != "\"" {
                    if c == "\\", let next = rest.dropFirst().first { value.append(next); rest = rest.dropFirst(2); continue }
                    value.append(c)
                    rest = rest.dropFirst()
                }
                rest = rest.dropFirst()
            } else {
                value = String(rest.prefix { $0 != "," })
                rest = rest.dropFirst(value.count)
            }
            out[key] = value
        }
        return out
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e {
                out.append(Character(UnicodeScalar(b)))
            } else {
                out += "%" + String(b >> 4, radix: 16, uppercase: true) + String(b & 0xf, radix: 16, uppercase: true)
            }
        }
        return out
    }
}
