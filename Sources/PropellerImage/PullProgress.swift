import Foundation
import PropellerCore

/// What a pull has fetched so far, for a progress display: the image's layers, how many are
/// stored, and bytes received against the layers' total. Updated from the fetching thread; the
/// observer is called on it (for every change: it decides how often to draw).
public final class PullProgress: @unchecked Sendable {
    public struct Snapshot: Sendable {
        public var reference: String
        public var layers: Int
        public var layersDone: Int
        public var receivedBytes: UInt64
        public var totalBytes: UInt64
        /// Since the first byte of the first layer asked for.
        public var elapsed: Duration
        public var finished: Bool

        /// Bytes per second so far (0 before a tenth of a second has passed).
        public var rate: Double {
            let (s, a) = elapsed.components
            let seconds = Double(s) + Double(a) / 1e18
            return seconds >= 0.1 ? Double(receivedBytes) / seconds : 0
        }
    }

    private let lock = NSLock()
    private var snapshot: Snapshot
    private var perLayer: [UInt64] = []
    private var started = ContinuousClock.now
    private let observe: @Sendable (Snapshot) -> Void

    public init(reference: String, observe: @escaping @Sendable (Snapshot) -> Void) {
        snapshot = Snapshot(reference: reference, layers: 0, layersDone: 0, receivedBytes: 0, totalBytes: 0, elapsed: .zero, finished: false)
        self.observe = observe
    }

    /// The manifest is known: its layers' sizes; `stored` marks those already here (not fetched).
    func begin(sizes: [Int64], stored: [Bool]) {
        update { s in
            perLayer = sizes.map { _ in 0 }
            s.layers = sizes.count
            s.totalBytes = sizes.enumerated().reduce(0) { total, item in stored[item.offset] ? total : total + UInt64(max(0, item.element)) }
            s.layersDone = stored.filter { $0 }.count
            started = .now
        }
    }

    /// Layer `index` has `bytes` stored so far.
    func received(layer index: Int, bytes: UInt64) {
        update { s in
            guard index < perLayer.count, bytes >= perLayer[index] else { return }
            s.receivedBytes += bytes - perLayer[index]
            perLayer[index] = bytes
        }
    }

    func finished(layer index: Int) {
        update { s in s.layersDone = min(s.layers, s.layersDone + 1) }
    }

    /// Everything is stored (and unpacked, for a pull that unpacks).
    func end() {
        update { s in s.finished = true }
    }

    private func update(_ change: (inout Snapshot) -> Void) {
        lock.lock()
        change(&snapshot)
        snapshot.elapsed = ContinuousClock.now - started
        let now = snapshot
        lock.unlock()
        observe(now)
    }
}
