#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PropellerCore
import PropellerImage

/// A pull's progress on stderr: on a terminal, one line redrawn in place (at most ten times a
/// second) with a bar, bytes, rate and layers; elsewhere plain lines, one per layer stored and
/// one for the whole pull, so a log reads well.
package final class PullProgressDisplay: @unchecked Sendable {
    private let terminal: Bool
    private let width: Int
    private let lock = NSLock()
    private var lastDraw = ContinuousClock.now - .seconds(1)
    private var layersReported = 0
    private var drewLine = false

    package init(terminal: Bool = isatty(2) != 0) {
        self.terminal = terminal
        var columns = 80
        if terminal, let text = Environment.current["COLUMNS"], let n = Int(text), n >= 40 { columns = n }
        width = columns
    }

    /// A ``PullProgress`` that draws here.
    package func progress(for reference: String) -> PullProgress {
        PullProgress(reference: reference) { [self] snapshot in draw(snapshot) }
    }

    private func draw(_ s: PullProgress.Snapshot) {
        lock.lock()
        defer { lock.unlock() }
        if terminal {
            guard s.finished || ContinuousClock.now - lastDraw >= .milliseconds(100) else { return }
            lastDraw = .now
            if s.finished {
                if drewLine { printError("\r\u{1B}[K", terminator: "") }
                if s.receivedBytes > 0 { printError(Self.summary(s)) }
                return
            }
            guard s.totalBytes > 0 else { return }
            printError("\r\u{1B}[K" + line(s), terminator: "")
            drewLine = true
        } else {
            while layersReported < s.layersDone && s.receivedBytes > 0 {
                layersReported += 1
                printError("pulling \(s.reference): layer \(layersReported) of \(s.layers) stored, \(ByteSize(bytes: s.receivedBytes)) of \(ByteSize(bytes: s.totalBytes))")
            }
            if s.finished && s.receivedBytes > 0 { printError(Self.summary(s)) }
        }
    }

    /// `pulling REF [=====>    ] 12.3 MiB / 40 MiB  5.1 MiB/s  2/3 layers`, fitted to the terminal.
    func line(_ s: PullProgress.Snapshot) -> String {
        let fraction = s.totalBytes == 0 ? 0 : min(1, Double(s.receivedBytes) / Double(s.totalBytes))
        let figures = " \(ByteSize(bytes: s.receivedBytes)) / \(ByteSize(bytes: s.totalBytes))  \(ByteSize(bytes: UInt64(s.rate)))/s  \(s.layersDone)/\(s.layers) layers"
        var name = "pulling \(s.reference) "
        let barWidth = max(10, min(30, width - name.count - figures.count - 3))
        if name.count + barWidth + figures.count + 2 > width - 1 { name = "pulling " }
        return name + Self.bar(fraction, width: barWidth) + figures
    }

    /// `[=====>    ]`: `fraction` (0…1) of `width` cells.
    package static func bar(_ fraction: Double, width: Int) -> String {
        let filled = Int((min(1, max(0, fraction)) * Double(width)).rounded(.down))
        return "[" + String(repeating: "=", count: filled) + (filled < width ? ">" + String(repeating: " ", count: width - filled - 1) : "") + "]"
    }

    static func summary(_ s: PullProgress.Snapshot) -> String {
        let (seconds, attos) = s.elapsed.components
        let elapsed = Double(seconds) + Double(attos) / 1e18
        return "pulled \(s.reference): \(s.layers) layer\(s.layers == 1 ? "" : "s"), \(ByteSize(bytes: s.receivedBytes)) in \(String(format: "%.1f", elapsed)) s"
            + (s.rate > 0 ? " (\(ByteSize(bytes: UInt64(s.rate)))/s)" : "")
    }
}
