#if canImport(Glibc)
import Glibc
#endif

/// Reads `count` bytes from `fd` (retrying on EINTR); nil on an error or an early end of file.
/// For small files whose size the caller took from `fstat`.
public func readExactly(fd: Int32, count: Int) -> [UInt8]? {
    var data = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = data.withUnsafeMutableBytes { buffer -> Int in
            guard let base = buffer.baseAddress else { return -1 }
            return read(fd, base + done, buffer.count - done)
        }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return nil }
        done += n
    }
    return data
}
