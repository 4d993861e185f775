import Hummingbird

/// `/ui`: the web console (`Console/`), served from the binary with a strict
/// Content-Security-Policy: its own script and style only, no inline code, no other origin, no
/// framing. The page holds no secret; the API token the user signs in with stays in the tab's
/// session storage and goes only to this manager's API.
extension ManagerAPI {
    static let consoleSecurityHeaders: HTTPFields = [
        .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        .xContentTypeOptions: "nosniff",
        header("Referrer-Policy"): "no-referrer",
        header("X-Frame-Options"): "DENY",
        .cacheControl: "no-cache",
    ]

    /// Whether `path` is the console's (served without a token: the page asks for one).
    static func isConsolePath(_ path: String) -> Bool { path == "/ui" || path.hasPrefix("/ui/") }

    func addConsoleRoutes(_ router: Router<APIContext>) {
        let files: [(String, [UInt8], String)] = [
            ("/ui", PackageResources.index_html, "text/html; charset=utf-8"),
            ("/ui/console.js", PackageResources.console_js, "text/javascript; charset=utf-8"),
            ("/ui/console.css", PackageResources.console_css, "text/css; charset=utf-8"),
        ]
        for (path, bytes, type) in files {
            router.get(RouterPath(path)) { _, _ in
                var headers = Self.consoleSecurityHeaders
                headers[.contentType] = type
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
            }
        }
    }
}
