import Foundation
import Testing
import Formats
import Evaluation

@Suite struct TaskFileTests {
    func write(_ text: String) throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("realign-task-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).jsonl").path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    @Test func readsExamples() throws {
        let p = try write(#"{"prompt": "q1", "response": "a1", "extra": 3}"# + "\n\n" + #"{"prompt": "q2", "response": ""}"# + "\n")
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(try TaskExample.readJSONL(p) == [TaskExample(prompt: "q1", response: "a1"), TaskExample(prompt: "q2", response: "")])
    }

    @Test(arguments: [
        (#"{"prompt": "q"}"#, #"line 1: no string "response""#),
        ("{\"prompt\": \"q\", \"response\": \"r\"}\n\n{\"response\": \"r\"}", #"line 3: no string "prompt""#),
        ("{\"prompt\": \"q\", \"response\": \"r\"}\n{broken", "line 2: not a JSON object"),
        (#"["prompt", "response"]"#, "line 1: not a JSON object"),
        (#"{"prompt": 3, "response": "r"}"#, #"line 1: no string "prompt""#),
        ("\n  \n", "no JSON lines"),
    ])
    func errorsNameFileAndLine(text: String, problem: String) throws {
        let p = try write(text)
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: FormatError(p, problem)) { try TaskExample.readJSONL(p) }
    }

    @Test func missingFile() {
        #expect(throws: FormatError("/nonexistent/x.jsonl", "cannot open: No such file or directory")) { try TaskExample.readJSONL("/nonexistent/x.jsonl") }
    }
}
