import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// The attack suite: each case tries, through the real `propeller` binary, what a hostile
/// container, image, registry, API client or broker client would, and prints one line,
/// `attack: CASE: contained` or `attack: CASE: GOT THROUGH: what`. `scripts/attack` runs these
/// alone; `scripts/test` runs them with everything else. The invariant for every case:
/// contained, a clear error where there is a caller to tell, every daemon still up.
func attackReport(_ name: String, _ gotThrough: [String]) {
    print(gotThrough.isEmpty ? "attack: \(name): contained" : "attack: \(name): GOT THROUGH: " + gotThrough.joined(separator: "; "))
    #expect(gotThrough.isEmpty, "\(name): \(gotThrough)")
}

/// The fixture image with symlinks added at the root of its rootfs (name → target), as `tag`
/// in the OCI layout `directory/oci` (copied from the fixture's the first time).
func linkedImage(in directory: String, tag: String, links: [String: String]) throws {
    let layout = try ImageFixture.layout.get()
    let lines = links.keys.sorted().map { "ln -s '\(links[$0] ?? "")' bundle-\(tag)/rootfs/\($0)" }.joined(separator: "\n")
    let script = """
    set -e
    cd '\(directory)'
    [ -d oci ] || cp -a '\(layout)' oci
    umoci unpack --image oci:app bundle-\(tag) >/dev/null
    \(lines)
    umoci repack --image oci:\(tag) bundle-\(tag)
    """
    let built = try runProcess("/bin/sh", ["-c", script], timeout: 120)
    guard built.status == 0 else { throw PropellerError(.internalError, "build the linked image: \(String(decoding: built.stderr, as: UTF8.self))") }
}

/// An HTTP request with curl: the status and body.
func curl(_ method: String, _ url: String, token: String? = nil, body: String? = nil, bodyFile: String? = nil) throws -> (status: Int, body: String) {
    var args = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]
    if let token { args += ["-H", "Authorization: Bearer \(token)"] }
    var temporary: String?
    defer { temporary.map { _ = unlink($0) } }
    if let body, body.utf8.count > 64 << 10 {  // more than one argument may hold
        temporary = NSTemporaryDirectory() + "/propeller-curl-\(UUID().uuidString)"
        writeFile(temporary ?? "", body)
        args += ["-H", "Content-Type: application/json", "--data-binary", "@" + (temporary ?? "")]
    } else if let body {
        args += ["-H", "Content-Type: application/json", "--data-binary", body]
    }
    if let bodyFile { args += ["-H", "Content-Type: application/json", "--data-binary", "@" + bodyFile] }
    let r = try runProcess("/usr/bin/curl", args, timeout: 30)
    let text = String(decoding: r.stdout, as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
}

@Suite("Attack suite: hostile containers, images, registries, API and broker clients", .serialized,
       .enabled(if: isRoot, "requires root: containers, proplets and the launcher run for real"))
struct AttackTests {
    /// The escape attempts of `probe escape`, run from a terminal (a pseudo-terminal from
    /// `script`, as an operator's interactive shell): every one refused. Before the container had
    /// a session of its own, TIOCSTI on its inherited terminal typed into the operator's shell.
    @Test func aContainerCannotLeaveOrTypeIntoTheOperatorsTerminal() throws {
        let rootfs = try Fixture.path()
        let marker = "/tmp/propeller-attack-marker-\(UUID().uuidString)"
        writeFile(marker, "host only\n")
        defer { unlink(marker) }
        let command = "\(propellerBinary) run --rootfs \(rootfs) -- /bin/probe escape \(marker)"
        var env = ProcessInfo.processInfo.environment
        env["PROPELLER_SECCOMP_CACHE"] = seccompCacheForTests
        let r = try runProcess("/usr/bin/script", ["-qec", command, "/dev/null"], environment: env, timeout: 60)
        let text = String(decoding: r.stdout, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
        guard let start = text.firstIndex(of: "{"), let object = try JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: String] else {
            Issue.record("no report from probe escape (status \(r.status)): \(text) \(String(decoding: r.stderr, as: UTF8.self))")
            return
        }
        attackReport("container escape and terminal injection", Self.escapeAttempts(object))
    }

    /// What got through of `probe escape`'s attempts (its JSON report); `allowedToo` succeed
    /// on purpose in that setting.
    static func escapeAttempts(_ object: [String: String], allowedToo: Set<String> = [], eitherWay: Set<String> = []) -> [String] {
        var gotThrough: [String] = []
        // Where the kernel answers EPERM only because of our filter or capabilities, anything
        // else (EAFNOSUPPORT for a vsock on a host without the module) would hide a regression.
        let mustBeEPERM = Set<String>(["socket_vsock", "socket_vsock_high_bits", "mount", "unshare_user", "unshare_mount", "setns", "keyctl", "bpf",
                                         "perf_event_open", "userfaultfd", "io_uring_setup", "open_by_handle_at", "ptrace_attach", "clone_newuser",
                                         "kexec_load", "init_module", "mount_cgroup"])
            .union((0..<3).flatMap { ["tiocsti_fd\($0)", "tiocsti_fd\($0)_high_bits"] })
        let allowed: Set<String> = Set(["getsid_is_own", "mknod_block"]).union(allowedToo)  // a session of its own; mknod as Docker allows (the node cannot open)
        for (attempt, result) in object.sorted(by: { $0.key < $1.key }) where !eitherWay.contains(attempt) {
            if allowed.contains(attempt) {
                if result != "ok" { gotThrough.append("\(attempt) expected ok, got \(result)") }
            } else if result == "ok" {
                gotThrough.append("\(attempt) succeeded")
            } else if mustBeEPERM.contains(attempt) && result != "EPERM" {
                gotThrough.append("\(attempt) answered \(result), not EPERM")
            }
        }
        for attempt in mustBeEPERM.union(allowed).union(["open_dev_tty", "open_block", "chroot_breakout_reaches_host", "host_marker_visible"]) where object[attempt] == nil {
            gotThrough.append("\(attempt) missing from the report")
        }
        return gotThrough
    }


    /// The same attempts from a process started in a running task with `task exec -t`, on the
    /// operator's terminal: exec gives it the task's confinement and no more. What differs is its
    /// terminal: a pty the proplet opened for this session, its controlling one, which it may
    /// open and push input into (TIOCSTI on one's own terminal needs no capability); what it
    /// pushes is read by itself, never by the operator's terminal, which only receives output.
    @Test func aProcessExecutedInATaskIsHeldAsTheTaskIs() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("p", memory: "2G", extra: ["--image-source", "direct"])
        let task = try c.create("target", command: ["probe", "sleep", "300"])
        try c.waitFor(task, state: "running")
        let marker = "/tmp/propeller-attack-marker-\(UUID().uuidString)"
        writeFile(marker, "host only\n")
        defer { unlink(marker) }
        var env = ProcessInfo.processInfo.environment
        env["PROPELLER_MANAGER_URL"] = "http://127.0.0.1:\(c.managerPorts[0])"
        env["PROPELLER_API_TOKEN"] = c.token
        let command = "\(propellerBinary) task exec -t \(task) -- /bin/probe escape \(marker)"
        let r = try runProcess("/usr/bin/script", ["-qec", command, "/dev/null"], environment: env, timeout: 60)
        // The "#" it pushed into its own terminal come back as the terminal's echo, amid the report.
        let text = String(decoding: r.stdout, as: UTF8.self).replacingOccurrences(of: "\r", with: "").replacingOccurrences(of: "#", with: "")
        guard let start = text.firstIndex(of: "{"), let object = try JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: String] else {
            Issue.record("no report from probe escape through exec (status \(r.status)): \(text) \(String(decoding: r.stderr, as: UTF8.self))")
            return
        }
        attackReport("exec into a task: escape and terminal injection", Self.escapeAttempts(object, allowedToo: Set(["open_dev_tty", "tiocsti_dev_tty"]
                                                                                       + (0..<3).flatMap { ["tiocsti_fd\($0)", "tiocsti_fd\($0)_high_bits"] }),
                                                          eitherWay: ["mknod_block"]))  // refused here (stricter than run); the node would not open anyway (open_block))
        _ = try c.cli(["task", "stop", task, "--grace", "0"])
        try c.waitForEnd(task)
    }

    /// Numbers far out of range in every field that takes one: a 422 naming the range at the
    /// API; and the same numbers sent to a proplet directly on the broker (as a compromised or
    /// buggy manager would) do not crash it. `timeout_seconds: 1e300` once killed every proplet
    /// it reached with an overflow trap.
    @Test func extremeNumbersGetAClearErrorAndCrashNoDaemon() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        var gotThrough: [String] = []
        let api = c.managerURL
        let bodies = [
            #"{"name":"x","image":"\#(c.image)","timeout_seconds":1e300,"start":true}"#,
            #"{"name":"x","image":"\#(c.image)","timeout_seconds":-1}"#,
            #"{"name":"x","image":"\#(c.image)","resources":{"cpu_millis":9223372036854775807}}"#,
            #"{"name":"x","image":"\#(c.image)","resources":{"memory_bytes":9223372036854775807}}"#,
            #"{"name":"x","image":"\#(c.image)","resources":{"pids":9223372036854775807}}"#,
        ]
        for body in bodies {
            let r = try curl("POST", api + "/tasks", token: c.token, body: body)
            if r.status != 422 || !r.body.contains("must be") { gotThrough.append("POST /tasks \(body) → \(r.status) \(r.body)") }
        }
        let actor = try curl("POST", api + "/actors", token: c.token, body: #"{"name":"a","image":"\#(c.image)","timeout_seconds":1e300}"#)
        if actor.status != 422 { gotThrough.append("POST /actors timeout 1e300 → \(actor.status) \(actor.body)") }

        // A running task, then a stop with an absurd grace at the API.
        let id = try c.create("sleeper", command: ["sleep", "30"])
        try c.waitFor(id, state: "running")
        let stop = try curl("POST", api + "/tasks/\(id)/stop?grace=1e10", token: c.token)
        if stop.status != 422 { gotThrough.append("stop grace=1e10 → \(stop.status) \(stop.body)") }

        // The proplet's own start and stop topics, written to directly.
        let topics = Topics(domain: "propeller", channel: "control")
        let start = StartTask(taskId: "forged-\(UUID().uuidString.prefix(8))", attempt: 1, name: "forged", image: c.image, command: ["sleep", "1"],
                              env: [:], workdir: nil, user: nil, resources: Resources(memoryBytes: 64 << 20), timeoutSeconds: 1e300, network: "none")
        try mosquittoPublish(port: c.broker.port, topic: topics.start("p"), payload: try WireCoding.encode(start))
        try mosquittoPublish(port: c.broker.port, topic: topics.stop("p"), payload: try WireCoding.encode(StopTask(taskId: id, attempt: 1, signal: 15, graceSeconds: 1e300)))
        try mosquittoPublish(port: c.broker.port, topic: topics.stop("p"), payload: Array(#"{"task_id":"\#(id)","attempt":1,"signal":15,"grace_seconds":-1e308}"#.utf8))
        sleep(3)
        if c.proplets["p"]?.isRunning != true { gotThrough.append("the proplet died: \(c.proplets["p"]?.log.suffix(2000) ?? "")") }
        if c.manager?.isRunning != true { gotThrough.append("the manager died") }
        // Still serving: a task completes.
        let ok = try c.cli(["task", "create", "after", "--image", c.image, "--wait", "--", "echo", "alive"])
        if ok.status != 0 || ok.stdoutText != "alive\n" { gotThrough.append("no task ran afterwards: \(ok.stderrText)") }
        attackReport("extreme numbers (API and broker)", gotThrough)
    }

    /// A task started without `--pids` still has a pid limit: a fork bomb stops at it.
    @Test func aForkBombStopsAtTheDefaultPidLimit() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        var gotThrough: [String] = []
        // The bomb's children sleep: its report comes on stdout, then it is stopped.
        let id = try c.create("bomb", command: ["sh", "-c", "/bin/probe forkbomb 5000 & sleep 3; kill -9 -1"])
        try c.waitUntil("the bomb to finish", timeout: 60) { (try c.task(id)["state"] as? String).map { ["completed", "failed"].contains($0) } ?? false }
        let logs = try c.cli(["task", "logs", id])
        let line = logs.stdoutText.split(separator: "\n").first { $0.hasPrefix("{") }.map(String.init) ?? ""
        let report = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        let forked = report?["forked"] as? Int ?? -1
        if forked < 0 || forked >= 1024 || report?["error"] as? String != "EAGAIN" { gotThrough.append("forked \(forked): \(logs.stdoutText) \(logs.stderrText)") }
        let task = try c.task(id)
        if (task["resources"] as? [String: Any])?["pids"] as? Int != 1024 { gotThrough.append("the task's pids are \(String(describing: task["resources"]))") }
        attackReport("fork bomb without --pids", gotThrough)
    }

    /// A registry that answers 401 with a token realm on another host does not get the
    /// credentials given for it; a host that only starts with "127." is not loopback.
    @Test func credentialsGoOnlyToTheRegistryTheyWereGivenFor() throws {
        let realm = try ScriptedHTTPServer { _ in .init(status: 200, body: Data(#"{"token":"t"}"#.utf8)) }
        defer { realm.stop() }
        let registry = try ScriptedHTTPServer { request in
            request.path == "/v2/" ? .init(status: 200)
                : .init(status: 401, headers: ["WWW-Authenticate": #"Bearer realm="http://localhost:\#(realm.port)/token",service="evil""#])
        }
        defer { registry.stop() }
        let data = try TempDirectory("propeller-attack")
        defer { data.remove() }
        var gotThrough: [String] = []
        let env = ["PROXY_REGISTRY_USERNAME": "alice", "PROXY_REGISTRY_PASSWORD": "s3cret-attack-pw", "HOME": data.path]
        _ = try propeller(["run", "--data-dir", data.path, "--image", "127.0.0.1:\(registry.port)/app:v1", "--", "true"], environment: env)
        for request in realm.requests where request.headers.keys.contains(where: { $0.lowercased() == "authorization" }) {
            gotThrough.append("the realm on another host received \(request.headers.first { $0.key.lowercased() == "authorization" }?.value ?? "")")
        }
        if realm.requests.isEmpty { gotThrough.append("the realm was never asked (the test did not exercise the challenge)") }

        // A daemon that pulls what API clients name must be told which registry the credentials are for.
        let proxy = try propeller(["proxy", "--mqtt", "tcp://127.0.0.1:1", "--data-dir", data.path + "/proxy"], environment: env)
        if proxy.status == 0 || !proxy.stderrText.contains("--registry") { gotThrough.append("the proxy started with unbound credentials: \(proxy.stderrText)") }

        // 127.evil.example is a DNS name: HTTPS, never plain HTTP (the pull fails to resolve, but not over http://).
        let evil = try propeller(["run", "--data-dir", data.path, "--pull", "always", "--image", "127.evil.invalid/app:v1", "--", "true"], environment: env)
        if evil.stderrText.contains("http://127.evil") { gotThrough.append("127.evil.invalid spoken to over plain HTTP: \(evil.stderrText)") }
        attackReport("registry credentials to another host", gotThrough)
    }
}

extension AttackTests {
    /// A registry that answers without end, claims absurd sizes or sends the client elsewhere:
    /// every pull stops with a clear error, within the bounds the manifest declared, and leaves
    /// nothing behind in the store. The same bounds apply to the proxy (it shares the client).
    @Test func aHostileRegistryGetsAClearErrorAndFillsNoDisk() throws {
        let config = Data(#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
        let configDigest = Digest(sha256: SHA256.hash(config)).description
        let fakeLayer = "sha256:" + String(repeating: "ab", count: 32)
        let layeredConfig = Data(#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["\#(fakeLayer)"]}}"#.utf8)
        let layeredDigest = Digest(sha256: SHA256.hash(layeredConfig)).description
        // Another host, to which the registry redirects blobs: it must never see the credentials.
        let elsewhere = try ScriptedHTTPServer { _ in .init(status: 200, body: config) }
        defer { elsewhere.stop() }
        let elsewherePort = elsewhere.port
        @Sendable func manifest(configSize: Int, layers: [(String, Int)]) -> Data {
            let list = layers.map { #"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\#($0.0)","size":\#($0.1)}"# }
            let (digest, size) = layers.count == 1 && configSize == config.count ? (layeredDigest, layeredConfig.count) : (configDigest, configSize)
            return Data(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(digest)","size":\#(size)},"layers":[\#(list.joined(separator: ","))]}"#.utf8)
        }
        let registry = try ScriptedHTTPServer { request in
            let ociType = ["Content-Type": "application/vnd.oci.image.manifest.v1+json"]
            let tag = request.path.split(separator: "/").last.map(String.init) ?? ""
            if request.path == "/v2/" { return .init(status: 200) }
            if request.path.hasPrefix("/v2/redirect/") && request.headers["authorization"] == nil {
                return .init(status: 401, headers: ["WWW-Authenticate": #"Basic realm="registry""#])
            }
            switch (request.path.split(separator: "/").dropFirst().first.map(String.init) ?? "", request.path.contains("/manifests/") ? "m" : "b") {
            case ("endless-manifest", "m"): return .init(status: 200, headers: ociType, body: Data(String(repeating: " ", count: 65536).utf8), endless: true)
            case ("huge-config", "m"): return .init(status: 200, headers: ociType, body: manifest(configSize: 1 << 40, layers: []))
            case ("many-layers", "m"): return .init(status: 200, headers: ociType, body: manifest(configSize: config.count, layers: Array(repeating: (fakeLayer, 10), count: 200)))
            case ("huge-layers", "m"): return .init(status: 200, headers: ociType, body: manifest(configSize: config.count, layers: [(fakeLayer, 1 << 50)]))
            case ("endless-config", "m"), ("endless-layer", "m"):
                return .init(status: 200, headers: ociType, body: manifest(configSize: config.count, layers: [(fakeLayer, 4096)]))
            case ("endless-config", "b"): return .init(status: 200, body: config, endless: true)
            case ("endless-layer", "b"):
                return tag == layeredDigest ? .init(status: 200, body: layeredConfig) : .init(status: 200, body: Data(repeating: 0x1f, count: 65536), endless: true)
            case ("redirect", "m"), ("file-redirect", "m"):
                return .init(status: 200, headers: ociType, body: manifest(configSize: config.count, layers: []))
            case ("redirect", "b"): return .init(status: 307, headers: ["Location": "http://127.0.0.1:\(elsewherePort)/storage/config"])
            case ("file-redirect", "b"): return .init(status: 307, headers: ["Location": "file:///etc/passwd"])
            default: return .init(status: 404)
            }
        }
        defer { registry.stop() }
        var gotThrough: [String] = []
        let cases: [(String, String)] = [
            ("endless-manifest", "larger than 8 MiB"), ("huge-config", "the image config claims"), ("many-layers", "200 layers (at most 128)"),
            ("huge-layers", "more than 64 GiB together"), ("endless-config", "more than the expected"), ("endless-layer", "more than the expected"),
            ("redirect", "not found in the container"), ("file-redirect", "redirect"),
        ]
        for (name, expected) in cases {
            let data = try TempDirectory("propeller-attack-registry")
            defer { data.remove() }
            let env = ["PROPELLER_REGISTRY_USERNAME": "alice", "PROXY_REGISTRY_USERNAME": "alice", "PROXY_REGISTRY_PASSWORD": "s3cret-redirect-pw", "HOME": data.path]
            let r = try propeller(["run", "--data-dir", data.path, "--image", "127.0.0.1:\(registry.port)/\(name):v1", "--", "true"], environment: env)
            if r.status == 0 || r.status > 127 { gotThrough.append("\(name): exit status \(r.status): \(r.stderrText.suffix(500))") }
            if !expected.isEmpty && !r.stderrText.contains(expected) { gotThrough.append("\(name): no clear error (wanted \"\(expected)\"): \(r.stderrText.suffix(500))") }
            let du = try runProcess("/usr/bin/du", ["-sb", data.path], timeout: 30)
            let used = Int(String(decoding: du.stdout, as: UTF8.self).split(separator: "\t").first ?? "") ?? -1
            if used < 0 || used > 1 << 20 { gotThrough.append("\(name): \(used) bytes left in the data directory") }
        }
        if elsewhere.requests.isEmpty { gotThrough.append("the redirect was not followed (the case did not exercise it)") }
        for request in elsewhere.requests where request.headers["authorization"] != nil {
            gotThrough.append("the host redirected to received \(request.headers["authorization"] ?? "")")
        }
        if registry.endlessBytes.withLock({ $0 }) > 64 << 20 { gotThrough.append("read \(registry.endlessBytes.withLock { $0 }) bytes of endless answers") }
        attackReport("hostile registry (endless, huge, many layers, redirects)", gotThrough)
    }
}

extension AttackTests {
    /// Requests built to exhaust the manager: nesting, size, long lists, absurd pages, and
    /// `logs --follow` readers that never read while a task prints 100 MB. Each gets a clear
    /// answer; the manager keeps answering, its memory stays bounded, and the chatty task's
    /// result is stored.
    @Test func abusiveAPIRequestsGetAClearAnswerAndSlowReadersCostNothing() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let api = c.managerURL
        var gotThrough: [String] = []
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        for (what, body) in [("a 200,000-deep array", deep), ("a 200,000-deep object", String(repeating: #"{"a":"#, count: 200_000) + "1" + String(repeating: "}", count: 200_000))] {
            let r = try curl("POST", api + "/tasks", token: c.token, body: body)
            if r.status != 400 && r.status != 413 { gotThrough.append("\(what) → \(r.status) \(r.body.prefix(300))") }
        }
        let hugeFile = c.dir.path + "/huge.json"
        writeFile(hugeFile, #"{"name":"x","image":""# + String(repeating: "x", count: 64 << 20) + #""}"#)
        let huge = try curl("POST", api + "/tasks", token: c.token, bodyFile: hugeFile)
        if huge.status != 413 || !huge.body.contains("larger than") { gotThrough.append("a 64 MiB body → \(huge.status) \(huge.body.prefix(300))") }
        unlink(hugeFile)
        for query in ["limit=99999999999999999999", "offset=-1", "limit=1e9"] {
            let r = try curl("GET", api + "/tasks?" + query, token: c.token)
            if r.status != 400 { gotThrough.append("GET /tasks?\(query) → \(r.status)") }
        }
        // Long lists within the size limit are work like any other: they run, and say so.
        let args = (0..<100_000).map { _ in #""x""# }.joined(separator: ",")
        let long = try curl("POST", api + "/tasks", token: c.token,
                            body: #"{"name":"args","image":"\#(c.image)","start":true,"command":["sh","-c","echo $#","sh",\#(args)]}"#)
        let env = (0..<20_000).map { #""K\#($0)":"v""# }.joined(separator: ",")
        let manyEnv = try curl("POST", api + "/tasks", token: c.token,
                               body: #"{"name":"env","image":"\#(c.image)","start":true,"command":["sh","-c","env | grep -c ^K"],"env":{\#(env)}}"#)
        for (what, r, expected) in [("100,000 arguments", long, "100000\n"), ("20,000 variables", manyEnv, "20000\n")] {
            guard r.status == 201, let id = (try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any])?["id"] as? String else {
                gotThrough.append("\(what) → \(r.status) \(r.body.prefix(300))")
                continue
            }
            try c.waitUntil("\(what) to finish", timeout: 60) { (try c.task(id)["state"] as? String).map { ["completed", "failed"].contains($0) } ?? false }
            let out = try c.cli(["task", "logs", id]).stdoutText
            if out != expected { gotThrough.append("\(what): the task printed \(out.prefix(200)) (\(try c.task(id)["reason"] ?? "-"))") }
        }

        // Slow readers: sixteen followers that never read, while a task prints 100 MB.
        let managerPID = try #require(c.manager?.pid)
        func residentMiB() -> Int {
            let status = readFile("/proc/\(managerPID)/status") ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) >> 10
        }
        let chatty = try c.create("chatty", command: ["sh", "-c", "sleep 1; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 100000000; echo; echo done"])
        try c.waitFor(chatty, state: "running")
        let before = residentMiB()
        var readers: [Int32] = []
        for _ in 0..<16 {
            guard let fd = connectLoopback(port: c.httpPort) else { continue }
            var small: Int32 = 4096
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            let request = "GET /tasks/\(chatty)/logs?follow=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(c.token)\r\n\r\n"
            _ = request.withCString { write(fd, $0, strlen($0)) }
            readers.append(fd)
        }
        defer { readers.forEach { close($0) } }
        var peak = before
        var unanswered = 0
        try c.waitUntil("the chatty task to finish", timeout: 240) {
            peak = max(peak, residentMiB())
            if httpGet(port: c.httpPort, "/health") == nil { unanswered += 1 }
            return (try c.task(chatty)["state"] as? String).map { ["completed", "failed"].contains($0) } ?? false
        }
        let final = try c.task(chatty)
        if final["state"] as? String != "completed" { gotThrough.append("the chatty task ended \(final["state"] ?? "-"): \(final["reason"] ?? "-")") }
        if !(try c.cli(["task", "logs", chatty]).stdoutText.hasSuffix("done\n")) { gotThrough.append("the chatty task's output tail was not stored") }
        if peak - before > 200 { gotThrough.append("the manager grew from \(before) to \(peak) MiB with sixteen readers that do not read") }
        if unanswered > 0 { gotThrough.append("/health went unanswered \(unanswered) times") }
        print("attack: slow readers: manager resident \(before) → peak \(peak) MiB")
        if c.manager?.isRunning != true || c.proplets["p"]?.isRunning != true { gotThrough.append("a daemon died") }
        attackReport("API abuse (deep, huge, long lists, slow readers)", gotThrough)
    }
}

extension AttackTests {
    /// A proplet (or anyone who can write its request topic) asks the proxy a thousand times
    /// for every chunk of a blob: the proxy merges the requests and publishes each blob's
    /// chunks again at most every 250 ms, instead of flooding every subscriber of the blob a
    /// thousand times; malformed and mislabelled requests are dropped; everything still works.
    @Test func aResendFloodIsMergedAndForgedRequestsAreDropped() throws {
        let c = try Cluster()
        try c.startProplet("p", memory: "2G")
        let first = try c.cli(["task", "create", "warm", "--image", c.image, "--wait", "--", "true"])
        try #require(first.status == 0, "\(first.stderrText)")
        let (repository, tag) = (c.tag.split(separator: ":").first.map(String.init) ?? "", c.tag.split(separator: ":").last.map(String.init) ?? "")
        let manifest = try runProcess("/usr/bin/curl", ["-s", "-H", "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
                                                       "http://\(c.registry.address)/v2/\(repository)/manifests/\(tag)"], timeout: 10)
        let layers = (try JSONSerialization.jsonObject(with: manifest.stdout) as? [String: Any])?["layers"] as? [[String: Any]] ?? []
        let layer = try #require(layers.max { ($0["size"] as? Int ?? 0) < ($1["size"] as? Int ?? 0) })
        let digest = try #require(layer["digest"] as? String)
        let chunks = ((layer["size"] as? Int ?? 0) + (64 << 10) - 1) / (64 << 10)
        var gotThrough: [String] = []

        let topics = Topics(domain: "propeller", channel: "control")
        let request = String(decoding: try WireCoding.encode(RegistryRequest(kind: .resend, requestId: "flood", propletId: "p", image: c.image, digest: digest)), as: UTF8.self)
        let forged = String(decoding: try WireCoding.encode(RegistryRequest(kind: .resend, requestId: "forged", propletId: "someone-else", image: c.image, digest: digest)), as: UTF8.self)
        let lines = Array(repeating: request, count: 1000) + Array(repeating: forged, count: 100) + Array(repeating: "{not json", count: 100)
        let publishedBefore = c.proxyMetric("chunks_published_total") ?? 0
        let started = Date()
        let pub = try runProcess("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", String(c.broker.port), "-q", "1", "-t", topics.registryRequests(from: "p"), "-l"],
                                 stdin: Data((lines.joined(separator: "\n") + "\n").utf8), timeout: 60)
        try #require(pub.status == 0, "\(String(decoding: pub.stderr, as: UTF8.self))")
        let elapsed = Date().timeIntervalSince(started)
        // Until the proxy has published all it is going to (no change for 1.5 s).
        var published: [UInt64] = []
        while published.count < 120 && (published.count < 4 || Set(published.suffix(4)).count > 1) {
            usleep(500_000)
            published.append(c.proxyMetric("chunks_published_total") ?? 0)
        }
        let republished = Int((published.last ?? 0) - publishedBefore)
        let bound = (Int(elapsed / 0.25) + 3) * chunks
        print("attack: resend flood: 1000 requests for all \(chunks) chunks in \(String(format: "%.1f", elapsed)) s → \(republished) chunks published (bound \(bound))")
        if republished > bound { gotThrough.append("1000 resend requests made the proxy publish \(republished) chunks of a \(chunks)-chunk blob") }
        if republished < chunks { gotThrough.append("the resend was not answered at all (\(republished) chunks)") }
        if !(c.proxy?.log.contains("rejected a request") ?? false) { gotThrough.append("the mislabelled requests were not rejected") }
        if c.proxy?.isRunning != true { gotThrough.append("the proxy died") }
        let after = try c.cli(["task", "create", "after", "--image", c.image, "--wait", "--", "echo", "alive"])
        if after.stdoutText != "alive\n" { gotThrough.append("no task ran afterwards: \(after.stderrText)") }
        attackReport("broker resend flood and forged requests", gotThrough)
    }
}

extension AttackTests {
    /// An actor image that ships `/propeller` as a symlink to a host directory, run by a
    /// proplet that copies each rootfs (`--rootfs-mode copy`, as without overlayfs): the
    /// proplet writes the message and reads the results inside the container's root, and the
    /// host directory stays empty. Before, the proplet followed the link and wrote as root on
    /// the host.
    @Test func anImagesSymlinkDoesNotRedirectTheProplet() throws {
        let c = try Cluster()
        let hostTarget = try TempDirectory("propeller-attack-target")
        defer { hostTarget.remove() }
        let work = try TempDirectory("propeller-attack-image")
        defer { work.remove() }
        try linkedImage(in: work.path, tag: "inside", links: ["propeller": "/tmp"])
        try linkedImage(in: work.path, tag: "app", links: ["propeller": hostTarget.path])
        try c.registry.push(layout: work.path + "/oci", tag: "app", as: "linked:v1")
        try c.registry.push(layout: work.path + "/oci", tag: "inside", as: "inside:v1")
        try c.startProplet("p", memory: "2G", extra: ["--rootfs-mode", "copy"])
        var gotThrough: [String] = []
        let created = try c.cli(["actor", "create", "linked", "--image", "\(c.registry.address)/linked:v1", "--memory", "64M", "--",
                                 "sh", "-c", #"printf 'got %s' "$(cat /propeller/message)" > /propeller/results"#])
        let actor = created.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(created.status == 0, "\(created.stderrText)")
        func send(_ actor: String) throws -> CLIResult {
            var reply = try c.cli(["actor", "send", actor, "ping", "--sync"])
            for _ in 0..<50 where reply.status != 0 && reply.stderrText.contains("timed out") {
                usleep(200_000)  // the first worker may still be pulling
                reply = try c.cli(["actor", "send", actor, "ping", "--sync"])
            }
            return reply
        }
        let reply = try send(actor)
        let onHost = (try? FileManager.default.contentsOfDirectory(atPath: hostTarget.path)) ?? ["(unreadable)"]
        if !onHost.isEmpty { gotThrough.append("the proplet wrote \(onHost) into the host's \(hostTarget.path)") }
        // The link points at a path the image does not have: the execution fails and says why.
        if !reply.stderrText.contains("is a symlink to \(hostTarget.path), which the image does not have") {
            gotThrough.append("no clear error: \(reply.stdoutText) \(reply.stderrText)")
        }
        // A link to a directory the image has works, inside the container's root.
        let inside = try c.cli(["actor", "create", "inside", "--image", "\(c.registry.address)/inside:v1", "--memory", "64M", "--",
                                "sh", "-c", #"printf 'got %s in %s' "$(cat /propeller/message)" "$(ls /tmp | tr '\n' ' ')" > /propeller/results"#])
        let insideReply = try send(inside.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))
        if insideReply.stdoutText != "got ping in message results " { gotThrough.append("a link inside the image: \(insideReply.stdoutText) \(insideReply.stderrText)") }
        if !(c.proplets["p"]?.log.contains("--rootfs-mode copy") ?? false) { gotThrough.append("the proplet did not copy the rootfs (the case did not exercise the fallback)") }
        if c.proplets["p"]?.isRunning != true { gotThrough.append("the proplet died") }
        attackReport("image symlink redirecting the proplet's writes (rootfs copy)", gotThrough)
    }
}

extension AttackTests {
    /// An image whose paths are symlinks to the host's directories, and a task that puts a
    /// volume, a tmpfs, a secret and an artifact there, on both rootfs modes: nothing is made or
    /// mounted on the host; where the link's target is not in the image the start fails saying
    /// which mount, where it is, the mounts land inside the container.
    @Test func mountsThroughAnImagesSymlinksStayInside() throws {
        let hostTarget = try TempDirectory("propeller-attack-mounts")
        defer { hostTarget.remove() }
        let work = try TempDirectory("propeller-attack-mounts-image")
        defer { work.remove() }
        try linkedImage(in: work.path, tag: "app", links: ["data": hostTarget.path, "climb": "../../../../../../../../tmp"])
        var gotThrough: [String] = []
        for mode in ["overlay", "copy"] {
            let c = try Cluster()
            try c.registry.push(layout: work.path + "/oci", tag: "app", as: "linked:v1")
            try c.startProplet("p", memory: "2G", extra: ["--rootfs-mode", mode])
            let image = "\(c.registry.address)/linked:v1"
            writeFile(c.dir.path + "/value", "s3cret")
            _ = try c.cli(["secret", "create", "s", "--from-file", c.dir.path + "/value"])
            for flags in [["--volume", "cache:/data/v"], ["--tmpfs", "/data/t"], ["--secret", "s:/data/s"]] {
                let r = try c.cli(["task", "create", "through", "--image", image, "--start"] + flags + ["--", "sh", "-c", "echo x > /data/v/f"])
                let id = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
                let t = try c.waitForEnd(id)
                let error = (t["result"] as? [String: Any])?["error"] as? String ?? ""
                if t["state"] as? String != "failed" || !error.contains("mount a volume /data/") || !error.contains("through a symlink of the image") {
                    gotThrough.append("\(mode) \(flags): \(t["state"] ?? "?") \(error)")
                }
            }
            let inside = try c.create("inside", ["--volume", "cache:/climb/v"], command: ["sh", "-c", "echo in > /climb/v/f && ls /tmp"])
            let t = try c.waitForEnd(inside)
            if t["state"] as? String != "completed" || readFile(c.dir.path + "/proplet-p/volumes/cache/f") != "in\n" {
                gotThrough.append("\(mode): a link inside the image: \(t)")
            }
            let onHost = (try? FileManager.default.contentsOfDirectory(atPath: hostTarget.path)) ?? ["(unreadable)"]
            if !onHost.isEmpty { gotThrough.append("\(mode): made on the host: \(onHost)") }
            if readFile("/proc/self/mountinfo")?.contains(hostTarget.path) == true { gotThrough.append("\(mode): mounted on the host") }
            if c.proplets["p"]?.isRunning != true { gotThrough.append("\(mode): the proplet died") }
        }
        attackReport("mounts through an image's symlinks (volumes, tmpfs, secrets)", gotThrough)
    }

    /// Layers that try to write outside the rootfs (a `..` path, a file through a symlink to
    /// the host's /tmp, a hard link to a host file, a symlink swapped under a later entry), a
    /// device node, and a zero bomb unpacked onto a 384 MiB filesystem, each pulled and run
    /// through the binary: the run fails with a clear error naming the layer, or runs contained
    /// (the device is skipped); the host is untouched, and the bomb stops while the filesystem
    /// still has room and leaves nothing behind.
    @Test func hostileLayersCannotWriteOutsideTheRootfs() throws {
        let work = try TempDirectory("propeller-attack-layers")
        defer { work.remove() }
        let mark = "propeller-attack-\(UUID().uuidString.prefix(8))"
        let script = #"""
        import gzip, hashlib, io, json, sys, tarfile
        out, mark = sys.argv[1], sys.argv[2]
        def entry(t, name, kind=tarfile.REGTYPE, data=b"x", link=""):
            i = tarfile.TarInfo(name); i.type = kind; i.linkname = link; i.mode = 0o644
            if kind == tarfile.REGTYPE:
                i.size = len(data); t.addfile(i, io.BytesIO(data))
            else:
                t.addfile(i)
        layers = {
            "dotdot": [("../../../../../../tmp/" + mark + "-dotdot", tarfile.REGTYPE, "")],
            "symlink": [("link", tarfile.SYMTYPE, "/tmp"), ("link/" + mark + "-symlink", tarfile.REGTYPE, "")],
            "hardlink": [("hl", tarfile.LNKTYPE, "/etc/hostname"), ("hl", tarfile.REGTYPE, "")],
            "swap": [("d", tarfile.DIRTYPE, ""), ("d", tarfile.SYMTYPE, "/tmp"), ("d/" + mark + "-swap", tarfile.REGTYPE, "")],
            "device": [("mem", tarfile.CHRTYPE, "")],
        }
        index = {}
        for name, entries in layers.items():
            raw = io.BytesIO()
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
                for path, kind, link in entries:
                    if kind == tarfile.CHRTYPE:
                        i = tarfile.TarInfo(path); i.type = kind; i.devmajor = 1; i.devminor = 1; t.addfile(i)
                    else:
                        entry(t, path, kind, link=link)
            tar = raw.getvalue()
            blob = gzip.compress(tar)
            index[name] = (hashlib.sha256(blob).hexdigest(), hashlib.sha256(tar).hexdigest(), len(blob))
            open(out + "/" + name, "wb").write(blob)
        # 1 GiB of zeros in a megabyte of gzip.
        with open(out + "/bomb", "wb") as f:
            z = gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9)
            tar = hashlib.sha256()
            head = io.BytesIO()
            i = tarfile.TarInfo("zeros"); i.size = 1 << 30
            h = i.tobuf(format=tarfile.PAX_FORMAT); z.write(h); tar.update(h)
            block = bytes(1 << 20)
            for _ in range(1024): z.write(block); tar.update(block)
            z.write(bytes(1024)); tar.update(bytes(1024))
            z.close()
        data = open(out + "/bomb", "rb").read()
        index["bomb"] = (hashlib.sha256(data).hexdigest(), tar.hexdigest(), len(data))
        print(json.dumps(index))
        """#
        writeFile(work.path + "/make.py", script)
        let made = try runProcess("/usr/bin/python3", [work.path + "/make.py", work.path, mark], timeout: 300)
        let index = try #require(try JSONSerialization.jsonObject(with: made.stdout) as? [String: [Any]], "\(String(decoding: made.stderr, as: UTF8.self))")
        var blobs: [String: Data] = [:]
        var manifests: [String: Data] = [:]
        for (name, info) in index {
            guard let blob = info[0] as? String, let diff = info[1] as? String, let size = info[2] as? Int else { continue }
            blobs["sha256:" + blob] = FileManager.default.contents(atPath: work.path + "/" + name)
            let config = Data(#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":["sha256:\#(diff)"]}}"#.utf8)
            let configDigest = Digest(sha256: SHA256.hash(config)).description
            blobs[configDigest] = config
            manifests[name] = Data(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(configDigest)","size":\#(config.count)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:\#(blob)","size":\#(size)}]}"#.utf8)
        }
        let (served, documents) = (blobs, manifests)
        let registry = try ScriptedHTTPServer { request in
            let parts = request.path.split(separator: "/").map(String.init)
            guard parts.count == 4 else { return .init(status: request.path == "/v2/" ? 200 : 404) }
            if parts[2] == "manifests", let m = documents[parts[1]] {
                return .init(status: 200, headers: ["Content-Type": "application/vnd.oci.image.manifest.v1+json"], body: m)
            }
            if parts[2] == "blobs", let b = served[parts[3]] { return .init(status: 200, body: b) }
            return .init(status: 404)
        }
        defer { registry.stop() }
        let hostnameBefore = readFile("/etc/hostname")
        var gotThrough: [String] = []
        for name in index.keys.sorted() {
            let data = try TempDirectory("propeller-attack-layer")
            defer { data.remove() }
            if name == "bomb" {
                try #require(runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=384m", "propeller-attack", data.path], timeout: 10).status == 0)
            }
            defer { if name == "bomb" { _ = try? runProcess("/bin/umount", [data.path], timeout: 30) } }
            let r = try propeller(["run", "--data-dir", data.path, "--image", "127.0.0.1:\(registry.port)/\(name):v1", "--", "/bin/true"])
            if r.status > 127 { gotThrough.append("\(name): propeller crashed (\(r.status)): \(r.stderrText.suffix(300))") }
            let expected = ["bomb": "is kept free", "device": "/bin/true: ENOENT (not found in the container)", "dotdot": "path leaves the rootfs",
                            "hardlink": "absolute path in layer", "swap": "parent directory d: ENOENT", "symlink": "parent directory link: ENOENT"]
            if let phrase = expected[name], !r.stderrText.contains(phrase) { gotThrough.append("\(name): no clear error: \(r.status) \(r.stderrText.suffix(300))") }
            if name == "bomb" {
                var fs = statvfs()
                statvfs(data.path, &fs)
                let free = UInt64(fs.f_bavail) * UInt64(fs.f_frsize)
                if free < 300 << 20 { gotThrough.append("bomb: the filesystem is left with \(free >> 20) MiB of 384") }
            }
        }
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix(mark) }
        if !leftovers.isEmpty { gotThrough.append("written on the host: \(leftovers)") }
        if readFile("/etc/hostname") != hostnameBefore { gotThrough.append("/etc/hostname changed") }
        attackReport("hostile layers (.., symlinks, hard links, devices, zero bomb)", gotThrough)
    }
}

/// Publishes one QoS 1 message as an anonymous client of the test broker.
func mosquittoPublish(port: Int, topic: String, payload: [UInt8]) throws {
    let r = try runProcess("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-t", topic, "-s"], stdin: Data(payload), timeout: 10)
    guard r.status == 0 else { throw PropellerError(.internalError, "mosquitto_pub: \(String(decoding: r.stderr, as: UTF8.self))") }
}
