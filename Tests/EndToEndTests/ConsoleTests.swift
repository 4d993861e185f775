import Foundation
import PropellerCore
import PropellerTestSupport
import Testing

/// Headless Chromium with its driver and Selenium for Python.
enum ConsoleBrowser {
    static var isInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
            && (try? runProcess("/usr/bin/python3", ["-c", "import selenium"], timeout: 30).status) == 0
    }
}

/// The web console (`/ui`), in a real browser against real processes: `Tests/Browser/console.py`
/// drives headless Chromium with Selenium. Screenshots go to `PROPELLER_SCREENSHOTS` (default a
/// directory under /tmp, printed).
@Suite("Web console", .serialized, .enabled(if: isRoot, "requires root: proplets run containers"),
       .enabled(if: ConsoleBrowser.isInstalled, "requires chromium, chromium-driver and python3-selenium (scripts/setup installs them)"))
struct ConsoleTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Browser/console.py").path

    /// The page's headers, by curl (status line and fields).
    func headers(_ url: String) throws -> String {
        let r = try runProcess("/usr/bin/curl", ["-s", "-D", "-", "-o", "/dev/null", url], timeout: 30)
        return String(decoding: r.stdout, as: UTF8.self).lowercased()
    }

    @Test func signInCreateATaskWatchItCompleteAndDrainAProplet() throws {
        let c = try Cluster(proxy: false)
        try c.startProplet("console-p", memory: "2G", extra: ["--image-source", "direct"])
        let base = "http://127.0.0.1:\(c.managerPorts[0])"

        // The page and its files need no token and forbid everything but themselves; the API
        // still needs one.
        for path in ["/ui", "/ui/console.js", "/ui/console.css"] {
            let h = try headers(base + path)
            #expect(h.hasPrefix("http/1.1 200"), "\(path): \(h)")
            #expect(h.contains("content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'"), "\(path): \(h)")
            #expect(h.contains("frame-ancestors 'none'") && h.contains("x-content-type-options: nosniff") && h.contains("x-frame-options: deny"), "\(path): \(h)")
        }
        #expect(try headers(base + "/tasks").hasPrefix("http/1.1 401"))
        #expect(try headers(base + "/ui/../tasks").hasPrefix("http/1.1 401"))
        let page = httpGet(port: c.managerPorts[0], "/ui") ?? ""
        #expect(!page.contains("<script>") && !page.contains("style=") && !page.contains("http://") && !page.contains("https://"), "no inline code, nothing from elsewhere")

        // Another namespace's task, for the namespace picker.
        #expect(try c.cli(["namespace", "create", "team-a"]).status == 0)
        #expect(try c.cli(["task", "create", "in-team-a", "-n", "team-a", "--image", c.image, "--", "true"]).status == 0)

        let screenshots = ProcessInfo.processInfo.environment["PROPELLER_SCREENSHOTS"] ?? c.dir.path + "/screenshots"
        let r = try runProcess("/usr/bin/python3", [Self.script, "--url", base + "/ui", "--token", c.token, "--image", c.image,
                                                    "--proplet", "console-p", "--screenshots", screenshots], timeout: 240)
        let output = String(decoding: r.stdout + r.stderr, as: UTF8.self)
        print("console screenshots: \(screenshots)\n\(output)")
        #expect(r.status == 0 && !r.timedOut, "\(output)")
        #expect(output.contains("console: ok"))
        #expect(FileManager.default.fileExists(atPath: screenshots + "/task.png"))
    }
}
