#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerRuntime

/// Reads a container's stdout and stderr pipes until both close: keeps the last `tailBytes` of
/// each and hands blocks to `publish` at most every 100 ms or 16 KiB, so a chatty task neither
/// floods the broker nor waits long to be seen.
final class OutputCapture: @unchecked Sendable {
    let stdoutRead: Int32
    let stderrRead: Int32
    let tailBytes: Int
    let publish: @Sendable (LogBlock.Stream, UInt64, [UInt8]) -> Void
    private(set) var stdoutTail: [UInt8] = []
    private(set) var stderrTail: [UInt8] = []
    private var thread: pthread_t?
    private let done = OneShotEvent()

    /// Makes the pipes; the write ends go to the container.
    static func pipes() throws -> (read: [Int32], write: [Int32]) {
        let out = try StdioPipe.make()
        let err: (read: Int32, write: Int32)
        do {
            err = try StdioPipe.make()
        } catch {
            close(out.read)
            close(out.write)
            throw error
        }
        return ([out.read, err.read], [out.write, err.write])
    }

    init(stdoutRead: Int32, stderrRead: Int32, tailBytes: Int, publish: @escaping @Sendable (LogBlock.Stream, UInt64, [UInt8]) -> Void) {
        self.stdoutRead = stdoutRead
        self.stderrRead = stderrRead
        self.tailBytes = tailBytes
        self.publish = publish
    }

    func start() {
        Thread.detachNewThread { [self] in
            pump()
            done.signal()
        }
    }

    /// Blocks until both pipes are closed and everything is published.
    func finish() -> (stdout: String, stderr: String) {
        done.wait()
        return (String(decoding: stdoutTail, as: UTF8.self), String(decoding: stderrTail, as: UTF8.self))
    }

    private func pump() {
        var fds = [pollfd(fd: stdoutRead, events: Int16(POLLIN), revents: 0), pollfd(fd: stderrRead, events: Int16(POLLIN), revents: 0)]
        var pending: [[UInt8]] = [[], []]
        var offsets: [UInt64] = [0, 0]
        var lastFlush = ContinuousClock.now
        var buffer = [UInt8](repeating: 0, count: 65536)
        func flush(_ i: Int) {
            guard !pending[i].isEmpty else { return }
            publish(i == 0 ? .stdout : .stderr, offsets[i], pending[i])
            offsets[i] += UInt64(pending[i].count)
            pending[i].removeAll(keepingCapacity: true)
        }
        while fds[0].fd >= 0 || fds[1].fd >= 0 {
            let r = poll(&fds, 2, 100)
            if r < 0 && errno != EINTR { break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = read(fds[i].fd, &buffer, buffer.count)
                if n > 0 {
                    let chunk = buffer[0..<n]
                    pending[i].append(contentsOf: chunk)
                    if i == 0 { appendTail(&stdoutTail, chunk) } else { appendTail(&stderrTail, chunk) }
                    if pending[i].count >= 16 << 10 { flush(i) }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(fds[i].fd)
                    fds[i].fd = -1
                    flush(i)
                }
                fds[i].revents = 0
            }
            if ContinuousClock.now - lastFlush >= .milliseconds(100) {
                flush(0)
                flush(1)
                lastFlush = .now
            }
        }
        flush(0)
        flush(1)
    }

    private func appendTail(_ tail: inout [UInt8], _ chunk: ArraySlice<UInt8>) {
        tail.append(contentsOf: chunk)
        if tail.count > tailBytes { tail.removeFirst(tail.count - tailBytes) }
    }
}

/// A one-shot event that blocking threads wait for.
final class OneShotEvent: @unchecked Sendable {
    private let condition = NSCondition()
    private var signalled = false

    func signal() {
        condition.lock()
        signalled = true
        condition.broadcast()
        condition.unlock()
    }

    func wait() {
        condition.lock()
        while !signalled { condition.wait() }
        condition.unlock()
    }
}
