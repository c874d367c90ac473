import Foundation
import Testing
import Formats
import TestSupport

/// A broken chat template in a model folder: `realign template` prints one line naming
/// the template file, the line and the column, and exits non-zero.
@Suite struct TemplateErrorCLITests {
    @Test func brokenTemplateNamesTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-cli-template-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try GGUFFile(path: RealModels.smol).modelConfig().writeHFConfig(to: dir + "/config.json")
        let tok = fixturesDir().replacingOccurrences(of: "CLITests", with: "TokenizerTests") + "/smollm2-digits"
        for f in ["tokenizer.json", "tokenizer_config.json"] { try FileManager.default.copyItem(atPath: tok + "/" + f, toPath: dir + "/" + f) }
        let jinja = dir + "/chat_template.jinja"
        try Data("hello\n{% for m in messages %}\n  {{ m.content + }}\n{% endfor %}".utf8).write(to: URL(fileURLWithPath: jinja))
        let messages = dir + "/messages.json"
        try Data(#"[{"role": "user", "content": "hi"}]"#.utf8).write(to: URL(fileURLWithPath: messages))

        let r = try CLI.run(["template", dir, "--messages", messages])
        #expect(r.status != 0)
        #expect(r.stderr == "Error: \(jinja): chat template syntax error at line 3, column 18: unexpected 'end of print statement'\n")
    }
}
