import Foundation
import PropellerCore
import Testing

struct JSONValueTests {
    func parse(_ text: String) -> JSONValue? { JSONValue(parsing: Array(text.utf8)) }

    @Test func readsEveryKindOfValue() throws {
        let v = try #require(parse(#" { "a": [1, -2.5e3, 0, true, false, null], "b": {"c": "d"}, "e": "", "f": {} , "g": [] } "#))
        #expect(v["a"] == .array([.number(1), .number(-2500), .number(0), .bool(true), .bool(false), .null]))
        #expect(v["b"]?["c"]?.stringValue == "d")
        #expect(v["e"]?.stringValue == "")
        #expect(v["f"] == .object([]))
        #expect(v["g"]?.stringArray == [])
        #expect(v["missing"] == nil)
        #expect(v["a"]?["c"] == nil, "a subscript on an array is nil")
    }

    @Test func decodesEscapesAndUnicode() throws {
        let v = try #require(parse(#"["\"\\\/\b\f\n\r\t", "\u00e9\u4e2d", "\ud83d\ude00", "é中😀"]"#))
        #expect(v.stringArray == ["\"\\/\u{08}\u{0C}\n\r\t", "é中", "😀", "é中😀"])
    }

    @Test func aRepeatedKeyKeepsItsLastValue() throws {
        #expect(parse(#"{"k": "first", "k": "last"}"#)?["k"]?.stringValue == "last")
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "1.", ".5", "-", "+1", "1e", "1e+",
        "tru", "nul", "\"unterminated", "\"tab\there\"", "\"\\x\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"",
        "\"\\ud83d\\u0041\"", "[1] x", "{} {}", "1e400", "'single'",
    ])
    func rejectsWhatIsNotJSON(_ text: String) {
        #expect(parse(text) == nil, "\(text)")
    }

    @Test func rejectsInvalidUTF8() {
        #expect(JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) == nil)
        #expect(JSONValue(parsing: [0x22, 0xED, 0xA0, 0x80, 0x22]) == nil, "an encoded surrogate is not UTF-8")
    }

    @Test func limitsNesting() {
        let deep = String(repeating: "[", count: JSONValue.maximumDepth + 1) + String(repeating: "]", count: JSONValue.maximumDepth + 1)
        let ok = String(repeating: "[", count: JSONValue.maximumDepth) + String(repeating: "]", count: JSONValue.maximumDepth)
        #expect(parse(deep) == nil)
        #expect(parse(ok) != nil)
    }

    /// Agrees with Foundation's parser on strings: what one accepts the other reads the same.
    @Test func agreesWithFoundationOnStrings() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [String] = ["a", "Z", " ", "\\\"", "\\\\", "\\n", "\\u0041", "\\u00e9", "é", "😀", "\\ud83d\\ude00", "\\/", "\\t", "0"]
        for _ in 0..<300 {
            let body = (0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator) ?? "" }.joined()
            let text = "[\"\(body)\"]"
            let ours = parse(text)?.stringArray
            let theirs = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String]
            #expect(ours == theirs, "\(text)")
        }
    }
}
