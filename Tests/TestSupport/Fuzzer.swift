import Foundation
import PropellerCore

/// A small mutation fuzzer for the parsers on a trust boundary (what arrives from the broker, the
/// API, a registry or a file an operator edits). Each target starts from valid seeds and the
/// inputs saved under `Tests/FuzzCorpus/TARGET/` (every crash found becomes one), then mutates
/// them: bit flips, interesting integers written over bytes, byte runs inserted, deleted,
/// duplicated and spliced between seeds, JSON-ish tokens and huge numbers.
///
/// A parser may reject anything; it must not trap, hang or exhaust memory. A trap ends the
/// test process: the input being tried is always in `$PROPELLER_FUZZ_DIR/current-TARGET`
/// (written before each try) so `scripts/fuzz` can keep it as a regression input.
///
/// Time per target: `PROPELLER_FUZZ_SECONDS` (default 1, what `scripts/test` runs); the seed of
/// the random choices: `PROPELLER_FUZZ_SEED` (default: from the clock, printed).
public enum Fuzzer {
    public static var secondsPerTarget: Double {
        ProcessInfo.processInfo.environment["PROPELLER_FUZZ_SECONDS"].flatMap(Double.init) ?? 1
    }

    /// Runs `body` on the corpus and on mutations of it for ``secondsPerTarget``; returns how
    /// many inputs were tried.
    @discardableResult
    public static func run(_ target: String, seeds: [[UInt8]], _ body: ([UInt8]) -> Void) -> Int {
        let corpusDirectory = packageRoot + "/Tests/FuzzCorpus/" + target
        var corpus = seeds
        if let names = try? FileManager.default.contentsOfDirectory(atPath: corpusDirectory) {
            for name in names.sorted() {
                if let data = FileManager.default.contents(atPath: corpusDirectory + "/" + name) { corpus.append(Array(data)) }
            }
        }
        let seed = ProcessInfo.processInfo.environment["PROPELLER_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970 * 1000)
        print("fuzz: \(target): seed \(seed), \(corpus.count) corpus inputs, \(secondsPerTarget) s")
        var rng = SplitMix(seed: seed)
        let current = CurrentInput(target: target)
        for input in corpus {
            current.record(input)
            body(input)
        }
        let deadline = Date().addingTimeInterval(secondsPerTarget)
        var tried = corpus.count
        while Date() < deadline {
            for _ in 0..<64 {
                var input = corpus[Int(rng.next() % UInt64(corpus.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) { mutate(&input, corpus: corpus, rng: &rng) }
                current.record(input)
                body(input)
                tried += 1
            }
        }
        current.clear()
        print("fuzz: \(target): \(tried) inputs, no crash")
        return tried
    }

    static let tokens: [[UInt8]] = ["1e300", "-1e308", "NaN", "18446744073709551615", "-9223372036854775809", "9223372036854775807", "0.0000001",
                                    "null", "true", "[]", "{}", "\"", "\\u0000", "\\ud800", "[[[[[[[[[[", "{\"a\":", ":", ",", "..", "/", "@sha256:",
                                    "\u{FF10}", "é", "%00", "\0"].map { Array($0.utf8) }
    static let integers: [UInt64] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x7fff_ffff_ffff_ffff, .max, .max - 1]

    static func mutate(_ input: inout [UInt8], corpus: [[UInt8]], rng: inout SplitMix) {
        let n = input.count
        switch rng.next() % 8 {
        case 0 where n > 0:
            input[Int(rng.next() % UInt64(n))] ^= UInt8(1) << UInt8(rng.next() % 8)
        case 1 where n > 0:
            let value = integers[Int(rng.next() % UInt64(integers.count))]
            let width = [1, 2, 4, 8][Int(rng.next() % 4)]
            let at = Int(rng.next() % UInt64(n))
            for i in 0..<width where at + i < n { input[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(width - 1 - i))) }
        case 2:
            let token = tokens[Int(rng.next() % UInt64(tokens.count))]
            input.insert(contentsOf: token, at: n == 0 ? 0 : Int(rng.next() % UInt64(n + 1)))
        case 3 where n > 0:
            let at = Int(rng.next() % UInt64(n))
            input.removeSubrange(at..<min(n, at + 1 + Int(rng.next() % 16)))
        case 4 where n > 0:
            let at = Int(rng.next() % UInt64(n))
            let run = Array(input[at..<min(n, at + 1 + Int(rng.next() % 32))])
            input.insert(contentsOf: run, at: at)
        case 5:
            let other = corpus[Int(rng.next() % UInt64(corpus.count))]
            guard !other.isEmpty else { return }
            let from = Int(rng.next() % UInt64(other.count))
            input = Array(input.prefix(n == 0 ? 0 : Int(rng.next() % UInt64(n)))) + other[from...]
        case 6 where n > 0:
            // Replace a number in the text with an extreme one.
            if let digit = input.indices.filter({ input[$0] >= 48 && input[$0] <= 57 }).randomElement(using: &rng) {
                let token = tokens[Int(rng.next() % 6)]
                input.replaceSubrange(digit...digit, with: token)
            }
        case 7 where n > 0:
            input[Int(rng.next() % UInt64(n))] = UInt8(truncatingIfNeeded: rng.next())
        default:
            input.append(UInt8(truncatingIfNeeded: rng.next()))
        }
        if input.count > 1 << 16 { input.removeLast(input.count - (1 << 16)) }
    }

    /// The input being tried, on disk, for the crash that ends the process.
    final class CurrentInput {
        let path: String?
        let fd: Int32
        init(target: String) {
            if let dir = ProcessInfo.processInfo.environment["PROPELLER_FUZZ_DIR"] {
                path = dir + "/current-" + target
                fd = open(dir + "/current-" + target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            } else {
                path = nil
                fd = -1
            }
        }
        func record(_ input: [UInt8]) {
            guard fd >= 0 else { return }
            _ = ftruncate(fd, 0)
            _ = input.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        func clear() {
            guard fd >= 0, let path else { return }
            close(fd)
            unlink(path)
        }
    }
}

/// A fast deterministic generator (SplitMix64), so a seed replays a run.
public struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
