import Foundation
import PropellerCore

/// Helpers shared by the test targets: privilege checks, temp directories, the fixture rootfs.

/// True when the tests run as root; privileged tests are skipped otherwise, with a message.
public let isRoot = getuid() == 0

/// The repository root, found from this file's path.
public let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A temp directory removed by `remove()`.
/// A temporary directory removed when the last reference to it goes: a suite's per-test
/// instance holds one, so every test cleans up after itself.
public final class ScopedTempDirectory: Sendable {
    public let directory: TempDirectory
    public var path: String { directory.path }

    public init(_ prefix: String) throws { directory = try TempDirectory(prefix) }
    deinit { directory.remove() }
}

public struct TempDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "propeller-test") throws {
        path = NSTemporaryDirectory() + "/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Removes the directory, after unmounting what a killed daemon left mounted in it (a
    /// proplet's scratch tmpfs outlives a SIGKILL, as it is meant to).
    public func remove() {
        let resolved = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        if let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) {
            let points = table.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ")
                return fields.count > 4 ? String(fields[4]) : nil
            }.filter { $0.hasPrefix(resolved + "/") }
            for point in points.sorted(by: >) { _ = umount2(point, Int32(MNT_DETACH)) }
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The busybox + probe root filesystem from rootfs-fixtures/build-rootfs.sh, built once per
/// test process.
public enum Fixture {
    static let rootfs: Result<String, PropellerError> = {
        do {
            let dir = try TempDirectory("propeller-rootfs")
            let rootfs = try buildPristine(into: dir.path)
            atexit { Fixture.cleanup() }
            return .success(rootfs)
        } catch let error as PropellerError {
            return .failure(error)
        } catch {
            return .failure(PropellerError(.internalError, "cannot build the fixture rootfs: \(error)"))
        }
    }()

    /// The shared rootfs: containers run on it directly (`run --rootfs`) and may write into it.
    public static func path() throws -> String { try rootfs.get() }

    /// A rootfs of its own, built fresh into `directory` and never given to a container: what an
    /// image is built from must not carry what an earlier test's container wrote (the attack
    /// suite's `probe escape` leaves /tmp/escape-jail in the shared one).
    public static func buildPristine(into directory: String) throws -> String {
        let rootfs = directory + "/rootfs"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [packageRoot + "/rootfs-fixtures/build-rootfs.sh", rootfs]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw PropellerError(.internalError, "build-rootfs.sh failed with status \(p.terminationStatus)") }
        return rootfs
    }

    public static func cleanup() {
        if case .success(let path) = rootfs {
            try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
        }
    }
}

public func readFile(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

public func mkdirs(_ path: String) { try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }

/// Writes `text` to `path` in place. (FileManager.createFile writes atomically through a
/// "TemporaryDirectory.*" in /tmp that Foundation on Linux leaves behind.)
public func writeFile(_ path: String, _ text: String) {
    try? Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// A private certificate authority made with openssl, issuing certificates for 127.0.0.1.
public struct TestCA: Sendable {
    public let directory: String
    public var certificate: String { directory + "/ca.pem" }

    public init(_ directory: String, name: String = "Propeller Test CA") throws {
        self.directory = directory
        mkdirs(directory)
        try runTool("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                         "-keyout", directory + "/ca.key", "-out", directory + "/ca.pem", "-days", "2", "-subj", "/CN=\(name)"])
    }

    /// A certificate for `name` valid for 127.0.0.1 and localhost; returns (cert, key) paths
    /// (the key mode 600).
    public func issue(_ name: String) throws -> (certificate: String, key: String) {
        let base = directory + "/" + name
        try runTool("/usr/bin/openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", base + ".key",
                                         "-out", base + ".csr", "-subj", "/CN=\(name)"])
        writeFile(base + ".ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
        try runTool("/usr/bin/openssl", ["x509", "-req", "-in", base + ".csr", "-CA", certificate, "-CAkey", directory + "/ca.key", "-CAcreateserial",
                                         "-out", base + ".pem", "-days", "2", "-extfile", base + ".ext"])
        chmod(base + ".key", 0o600)
        return (base + ".pem", base + ".key")
    }
}

/// Runs `executable` to the end, feeding `stdin` and reading both pipes concurrently (so neither
/// side can block on a full pipe); `whileRunning` is called once it started. Killed after
/// `timeout` seconds (then `timedOut`).
public func runProcess(_ executable: String, _ args: [String], stdin: Data? = nil, environment: [String: String]? = nil, timeout: Double = 60,
                       whileRunning: ((Process) -> Void)? = nil) throws -> (status: Int32, stdout: Data, stderr: Data, timedOut: Bool) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try p.run()
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let stdin {
        DispatchQueue.global().async {
            input.fileHandleForWriting.write(stdin)
            try? input.fileHandleForWriting.close()
        }
    }
    whileRunning?(p)
    var timedOut = false
    if group.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        kill(p.processIdentifier, SIGKILL)
        group.wait()
    }
    p.waitUntilExit()
    return (p.terminationStatus, outData, errData, timedOut)
}

/// Runs a tool to the end; its status, stdout and stderr as text. A failing openssl throws.
@discardableResult
public func runTool(_ tool: String, _ args: [String], timeout: Double = 30) throws -> (status: Int32, stdout: String, stderr: String) {
    let r = try runProcess(tool, args, timeout: timeout)
    let result = (r.status, String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self))
    if tool.hasSuffix("openssl") && result.0 != 0 { throw PropellerError(.internalError, "openssl \(args.first ?? "") failed: \(result.2)") }
    return result
}

/// Runs `executable` with `args` on a pseudo-terminal of its own (Python's `pty`), as from an
/// operator's shell: its stdin, stdout and stderr are the terminal. Each of `keys` is typed after
/// waiting its delay (seconds). The exit status and everything the terminal showed.
public func runOnTerminal(_ executable: String, _ args: [String], keys: [(delay: Double, text: String)] = [], environment: [String: String]? = nil,
                          timeout: Double = 60) throws -> (status: Int32, shown: String) {
    let script = #"""
import json, os, pty, sys, time
keys = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
for delay, text in keys:
    time.sleep(delay)
    os.write(fd, text.encode())
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"""#
    let keyList = try JSONSerialization.data(withJSONObject: keys.map { [$0.delay, $0.text] as [Any] })
    let r = try runProcess("/usr/bin/python3", ["-c", script, String(decoding: keyList, as: UTF8.self), executable] + args,
                           environment: environment, timeout: timeout)
    return (r.status, String(decoding: r.stdout, as: UTF8.self))
}
