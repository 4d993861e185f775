#if canImport(Glibc)
import Glibc
#endif

/// Writes a line to standard error with one write(2), unbuffered and safe from any thread.
/// With `terminator: ""` the text goes out as it is (task output relayed by the CLI).
package func printError(_ line: String, terminator: String = "\n") {
    var text = line
    if !terminator.isEmpty && !text.hasSuffix(terminator) { text += terminator }
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { buffer -> Int in
            guard let base = buffer.baseAddress else { return 0 }
            return write(2, base + offset, buffer.count - offset)
        }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}
