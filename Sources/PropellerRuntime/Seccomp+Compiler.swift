#if canImport(Glibc)
import Glibc
#endif
import CLauncher
import CSeccomp
import PropellerCore

/// A seccomp profile compiled to a classic BPF program, ready for `PR_SET_SECCOMP`.
///
/// Compiling costs about a millisecond for the default profile, so a runtime compiles each
/// (profile, capability set) pair once and hands the same program to every container.
public final class SeccompProgram: @unchecked Sendable {
    // Immutable after init; the child process only reads it.
    let program: UnsafeMutablePointer<pl_bpf_program>
    private let filter: UnsafeMutableRawPointer
    /// Number of BPF instructions.
    public let instructionCount: Int

    deinit {
        filter.deallocate()
        program.deallocate()
    }

    /// A program from its BPF instructions (8 bytes each), as ``bytes`` returns them.
    init(bytes: [UInt8]) throws {
        guard !bytes.isEmpty, bytes.count % 8 == 0, bytes.count / 8 <= Int(UInt16.max) else {
            throw PropellerError(.invalidArgument, "seccomp: a BPF program of \(bytes.count) bytes is not valid")
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 8)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { buffer.copyMemory(from: base, byteCount: source.count) }
        }
        filter = buffer
        instructionCount = bytes.count / 8
        program = .allocate(capacity: 1)
        program.initialize(to: pl_bpf_program(len: UInt16(instructionCount), filter: buffer))
    }

    /// The BPF instructions, 8 bytes each.
    public var bytes: [UInt8] {
        Array(UnsafeRawBufferPointer(start: filter, count: instructionCount * 8))
    }

    /// Compiles `profile` for a process that will hold `capabilities`.
    public convenience init(profile: SeccompProfile, capabilities: CapabilitySet) throws {
        try self.init(bytes: Self.compile(profile: profile, capabilities: capabilities))
    }

    static func compile(profile: SeccompProfile, capabilities: CapabilitySet) throws -> [UInt8] {
        guard let ctx = seccomp_init(Self.action(profile.defaultAction, errno: profile.defaultErrnoRet)) else {
            throw PropellerError(.systemCall, "seccomp: seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        // The launcher sets no_new_privs itself, just before loading the filter.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        // A binary tree instead of a linear list: each syscall takes ~log2(n) comparisons, which
        // also makes the kernel's load-time cache pass (it emulates the filter for every syscall)
        // several times cheaper.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        let defaultAction = Self.action(profile.defaultAction, errno: profile.defaultErrnoRet)

        for rule in profile.rules(for: capabilities) {
            let action = Self.action(rule.action, errno: rule.errnoRet)
            if action == defaultAction { continue }
            let args = try (rule.args ?? []).map { arg -> scmp_arg_cmp in
                guard arg.index < 6 else {
                    throw PropellerError(.invalidArgument, "seccomp: argument index \(arg.index) out of range (0-5) for \(rule.names.joined(separator: ","))")
                }
                return scmp_arg_cmp(arg: arg.index, op: Self.compare(arg.op), datum_a: arg.value, datum_b: arg.valueTwo ?? 0)
            }
            for name in rule.names {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == __NR_SCMP_ERROR { continue }  // not a syscall on this architecture
                let rc = args.withUnsafeBufferPointer {
                    seccomp_rule_add_array(ctx, action, nr, UInt32($0.count), $0.baseAddress)
                }
                if rc < 0 {
                    throw PropellerError(.invalidArgument, "seccomp: cannot add rule for \(name): \(FileIO.errnoName(-rc))")
                }
            }
        }

        let fd = pl_memfd("propeller-seccomp")
        guard fd >= 0 else { throw FileIO.systemError("memfd_create", "seccomp") }
        defer { close(fd) }
        let rc = seccomp_export_bpf(ctx, fd)
        guard rc == 0 else { throw PropellerError(.systemCall, "seccomp: export BPF: \(FileIO.errnoName(-rc))") }
        let size = Int(lseek(fd, 0, SEEK_END))
        guard size > 0, size % 8 == 0, size / 8 <= Int(UInt16.max) else {
            throw PropellerError(.internalError, "seccomp: exported program has \(size) bytes")
        }
        _ = lseek(fd, 0, SEEK_SET)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = out.withUnsafeMutableBytes { dest -> Int in
                guard let base = dest.baseAddress else { return -1 }
                return read(fd, base + done, size - done)
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FileIO.systemError("read", "seccomp program") }
            done += n
        }
        return out
    }

    static func action(_ action: SeccompProfile.Action, errno: UInt32?) -> UInt32 {
        switch action {
        case .allow: return 0x7fff_0000
        case .errno: return 0x0005_0000 | ((errno ?? UInt32(EPERM)) & 0xffff)
        case .kill, .killThread: return 0x0000_0000
        case .killProcess: return 0x8000_0000
        case .trap: return 0x0003_0000
        case .log: return 0x7ffc_0000
        }
    }

    static func compare(_ op: SeccompProfile.Operator) -> scmp_compare {
        switch op {
        case .notEqual: return SCMP_CMP_NE
        case .lessThan: return SCMP_CMP_LT
        case .lessOrEqual: return SCMP_CMP_LE
        case .equal: return SCMP_CMP_EQ
        case .greaterOrEqual: return SCMP_CMP_GE
        case .greaterThan: return SCMP_CMP_GT
        case .maskedEqual: return SCMP_CMP_MASKED_EQ
        }
    }
}
