#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import PropellerCore

/// C memory for one `pl_launch` call: every string, array and the child's stack, allocated
/// before clone and freed after the child has exec'd or exited.
final class LaunchPlan {
    private var allocations: [UnsafeMutableRawPointer] = []
    private var cStrings: [UnsafeMutablePointer<CChar>] = []
    /// Secret bytes, overwritten before they are freed.
    private var secrets: [(pointer: UnsafeMutablePointer<UInt8>, count: Int)] = []
    let spec: UnsafeMutablePointer<pl_spec>
    static let stackSize = 256 * 1024

    init() {
        spec = .allocate(capacity: 1)
        spec.initialize(to: pl_spec())
        let stack = mmap(nil, Self.stackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0)
        spec.pointee.stack = stack == MAP_FAILED ? nil : stack
        spec.pointee.stack_size = Self.stackSize
    }

    deinit {
        if let stack = spec.pointee.stack { munmap(stack, Self.stackSize) }
        for s in cStrings { free(s) }
        for (pointer, count) in secrets {
            explicit_bzero(pointer, count)
            pointer.deallocate()
        }
        for a in allocations { a.deallocate() }
        spec.deallocate()
    }

    var hasStack: Bool { spec.pointee.stack != nil }

    func string(_ s: String) -> UnsafePointer<CChar> {
        guard let p = strdup(s) else { fatalError("out of memory") }
        cStrings.append(p)
        return UnsafePointer(p)
    }

    /// A NULL-terminated `char *const *`.
    func stringArray(_ items: [String]) -> UnsafePointer<UnsafeMutablePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: items.count + 1)
        allocations.append(UnsafeMutableRawPointer(array))
        for (i, item) in items.enumerated() { array[i] = UnsafeMutablePointer(mutating: string(item)) }
        array[items.count] = nil
        return UnsafePointer(array)
    }

    /// A `const char *const *` without terminator (count passed separately).
    func constStringArray(_ items: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(1, items.count))
        allocations.append(UnsafeMutableRawPointer(array))
        for (i, item) in items.enumerated() { array[i] = string(item) }
        return UnsafePointer(array)
    }

    /// A copy of secret bytes, zeroed when the plan ends.
    func secret(_ bytes: [UInt8]) -> UnsafePointer<UInt8> {
        let count = max(1, bytes.count)
        let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
        pointer.initialize(repeating: 0, count: count)
        bytes.withUnsafeBufferPointer { b in if let base = b.baseAddress { pointer.update(from: base, count: b.count) } }
        secrets.append((pointer, count))
        return UnsafePointer(pointer)
    }

    func array<T>(_ items: [T]) -> UnsafePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, items.count))
        allocations.append(UnsafeMutableRawPointer(p))
        for (i, item) in items.enumerated() { (p + i).initialize(to: item) }
        return UnsafePointer(p)
    }
}
