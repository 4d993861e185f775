import ArgumentParser
import PropellerCore

/// How a list prints (`--output`, `-o`): a table for people (`wide`: with more columns), or the
/// API's answer as JSON or YAML for scripts.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, wide, json, yaml
}

/// `--output table|wide|json|yaml` of every list command.
struct ListOutputOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("table (the default), wide (more columns), json or yaml (the API's answer).", valueName: "format"))
    var output: OutputFormat = .table

    /// The format, `--json` (of every client command) counting as `-o json`.
    func format(_ client: ClientOptions) -> OutputFormat { client.json ? .json : output }
}

/// A column of a list's table; a `wide` one shows with `-o wide` only.
struct Column {
    var name: String
    var wide = false

    init(_ name: String, wide: Bool = false) {
        self.name = name
        self.wide = wide
    }
}

/// Prints a list answer (`bytes`, as the API sent it) in `format`; `rows` gives every column's
/// cell, wide ones included.
func printList(_ bytes: [UInt8], _ format: OutputFormat, _ columns: [Column], rows: () throws -> [[String]]) rethrows {
    switch format {
    case .json: printJSON(bytes)
    case .yaml: print(YAMLText.from(json: bytes), terminator: "")
    case .table, .wide: print(try listTable(columns, wide: format == .wide, rows: rows()))
    }
}

/// The table of a list: every column, or (not `wide`) those that are not wide.
func listTable(_ columns: [Column], wide: Bool, rows: [[String]]) -> String {
    let keep = columns.indices.filter { wide || !columns[$0].wide }
    return table(keep.map { columns[$0].name }, rows.map { row in keep.map { $0 < row.count ? row[$0] : "" } })
}

/// YAML (1.2, block style) of a JSON document: mappings in the document's order, strings
/// double-quoted with JSON's escapes (which YAML reads the same), so no value can turn into
/// another type (`no`, `1e3`, `null` stay strings).
enum YAMLText {
    static func from(json bytes: [UInt8]) -> String {
        guard let value = JSONValue(parsing: bytes) else { return String(decoding: bytes, as: UTF8.self) }
        var out = ""
        emit(value, indent: 0, into: &out)
        return out
    }

    private static func emit(_ value: JSONValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .object(let members) where !members.isEmpty:
            for member in members {
                out += pad + key(member.key) + ":"
                block(member.value, indent: indent + 2, into: &out)
            }
        case .array(let items) where !items.isEmpty:
            for item in items {
                out += pad + "-"
                if case .object(let members) = item, !members.isEmpty {
                    // The first member on the dash's line, the others under it.
                    var nested = ""
                    emit(item, indent: indent + 2, into: &nested)
                    out += " " + nested.dropFirst(indent + 2)
                } else {
                    block(item, indent: indent + 2, into: &out)
                }
            }
        default:
            out += pad + scalar(value) + "\n"
        }
    }

    /// After `key:` or `-`: a scalar on the same line, a collection on the next ones.
    private static func block(_ value: JSONValue, indent: Int, into out: inout String) {
        switch value {
        case .object(let m) where !m.isEmpty:
            out += "\n"
            emit(value, indent: indent, into: &out)
        case .array(let a) where !a.isEmpty:
            out += "\n"
            emit(value, indent: indent, into: &out)
        default:
            out += " " + scalar(value) + "\n"
        }
    }

    private static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n):
            if n == n.rounded(), abs(n) < 9_007_199_254_740_992 { return String(Int64(n)) }
            return String(n)
        case .string(let s): return quoted(s)
        case .array: return "[]"
        case .object: return "{}"
        }
    }

    private static func key(_ k: String) -> String {
        let plain = !k.isEmpty && k.unicodeScalars.allSatisfy { ($0.value >= 0x61 && $0.value <= 0x7a) || ($0.value >= 0x41 && $0.value <= 0x5a)
            || ($0.value >= 0x30 && $0.value <= 0x39) || $0 == "_" || $0 == "-" || $0 == "." }
            && !(k.unicodeScalars.first.map { $0.value >= 0x30 && $0.value <= 0x39 || $0 == "-" || $0 == "." } ?? false)
            && !["true", "false", "null", "yes", "no", "on", "off", "y", "n"].contains(k.lowercased())
        return plain ? k : quoted(k)
    }

    private static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f || (u.value >= 0x80 && u.value < 0xa0) || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xfeff {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
