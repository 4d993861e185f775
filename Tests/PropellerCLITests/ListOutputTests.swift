import Foundation
import PropellerCore
@testable import PropellerCLI
import PropellerTestSupport
import Testing

/// `-o yaml` is the API's JSON as YAML: read back by a YAML parser (PyYAML), it is the same
/// document, whatever the strings hold.
@Suite("List output formats")
struct ListOutputTests {
    static let documents = [
        #"{"tasks":[{"id":"a1","name":"no","labels":{"on":"yes","1x":"null","":"~"},"exit":0,"cpu":0.25,"big":9007199254740000,"neg":-3,"ok":true,"none":null,"empty":[],"obj":{}}],"total":1}"#,
        #"{"text":"line one\nline two\t\"quoted\" \\ back: colon # hash - dash","unicode":"héllo ✓ \u0007 \u2028","list":[[1,2],[],[{"a":{"b":[null]}}],"- x",": y"]}"#,
        #"[]"#, #"{}"#, #"[{"k":1},{"k":2,"l":[3]}]"#, #""just a string""#, #"12.5"#,
    ]

    @Test(arguments: documents)
    func yamlReadsBackAsTheSameDocument(json: String) throws {
        let yaml = YAMLText.from(json: Array(json.utf8))
        let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])) == json.loads(sys.argv[2])))"
        let dir = try TempDirectory("propeller-yaml")
        defer { dir.remove() }
        writeFile(dir.path + "/doc.yaml", yaml)
        let r = try runProcess("/usr/bin/python3", ["-c", script, dir.path + "/doc.yaml", json])
        #expect(String(decoding: r.stdout, as: UTF8.self) == "true\n", "YAML:\n\(yaml)\nstderr: \(String(decoding: r.stderr, as: UTF8.self))")
    }

    @Test func wideColumnsShowOnlyWhenAsked() {
        let columns = [Column("ID"), Column("IMAGE", wide: true), Column("STATE")]
        let rows = [["t1", "app:v1", "running"]]
        let narrow = listTable(columns, wide: false, rows: rows)
        let wide = listTable(columns, wide: true, rows: rows)
        #expect(narrow.split(separator: "\n").map { $0.split(separator: " ").map(String.init) } == [["ID", "STATE"], ["t1", "running"]])
        #expect(wide.split(separator: "\n").map { $0.split(separator: " ").map(String.init) } == [["ID", "IMAGE", "STATE"], ["t1", "app:v1", "running"]])
    }
}
