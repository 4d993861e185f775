import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import PropellerCore
import PropellerRunCLI
import PropellerImage

/// `propeller image pull|ls|rm|prune`: the local image store.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Manage the images stored on this machine.",
        subcommands: [Pull.self, List.self, Remove.self, Prune.self]
    )

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pull an image (registry reference or oci:DIR[:TAG]), verify it and unpack it.")
        @OptionGroup var images: ImageOptions
        @Argument(help: ArgumentHelp("host[:port]/repo[:tag][@digest] or oci:DIR[:TAG]", valueName: "ref"))
        var reference: String

        func run() throws {
            try reportingErrors {
                var options = images.settings
                if options.pull == .missing { options.pull = .always }  // pulling is what was asked
                let store = try options.store()
                let image = try options.obtain(reference, store: store)
                _ = try store.rootfs(for: image)
                print(image.manifestDigest)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored images.")
        @OptionGroup var images: ImageOptions
        @Flag(help: "JSON output, for scripts.") var json = false

        func run() throws {
            try reportingErrors {
                let store = try images.store()
                let named = try store.namedImages()
                if json {
                    print("[" + named.map { n in
                        "{\"name\":\(jsonString(n.name)),\"digest\":\"\(n.digest)\",\"size\":\(size(of: n, in: store))}"
                    }.joined(separator: ",") + "]")
                    return
                }
                let rows = [["NAME", "DIGEST", "SIZE"]] + named.map { [$0.name, String($0.digest.hex.prefix(12)), ByteSize(bytes: size(of: $0, in: store)).description] }
                let widths = (0..<3).map { c in rows.map { $0[c].count }.max() ?? 0 }
                for row in rows {
                    print(row.enumerated().map { i, cell in i == 2 ? cell : cell.padding(to: widths[i] + 2) }.joined())
                }
            }
        }

        /// Compressed size: config plus layers.
        func size(of named: ImageStore.NamedImage, in store: ImageStore) -> UInt64 {
            guard let image = try? store.image(manifest: named.digest) else { return 0 }
            return ([image.manifest.config] + image.manifest.layers).reduce(0) { $0 + UInt64(max(0, $1.size)) }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Forget an image name (blobs go with prune).")
        @OptionGroup var images: ImageOptions
        @Argument(help: ArgumentHelp("a name from propeller image ls", valueName: "name")) var name: String

        func run() throws {
            try reportingErrors {
                let store = try images.store()
                // Accept the short forms people type (`127.0.0.1:5000/app` means `…:latest`).
                var key = name
                if !name.hasPrefix("oci:"), let ref = try? ImageReference(parsing: name) { key = ref.description }
                try store.remove(name: key)
            }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove blobs and unpacked images no name uses (do not run while pulling).")
        @OptionGroup var images: ImageOptions

        func run() throws {
            try reportingErrors {
                let freed = try images.store().prune()
                print("freed \(ByteSize(bytes: freed))")
            }
        }
    }
}

/// Runs `body`, turning a PropellerError into `propeller: message` and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as PropellerError {
        printError("propeller: \(error.message)")
        throw ExitCode(1)
    }
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if c.value < 0x20 {
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    return out + "\""
}

extension String {
    func padding(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
