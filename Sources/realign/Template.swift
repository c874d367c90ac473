import ArgumentParser
import Foundation
import Model
import Tokenizer

struct Template: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Render a conversation with the model's chat template (generation prompt added).")

    @Argument(help: "GGUF file, HF folder or embedded model name.") var model: String
    @Option(help: "JSON file: a list of {\"role\", \"content\"}.") var messages: String
    @Flag(help: "Print JSON: {\"text\": \"...\"}.") var json = false

    func run() throws {
        let m = try ChatFormat.load(model)
        guard let t = m.template else { throw ValidationError("\(m.path): the model has no chat template") }
        let data: Data
        data = try MappedFile.contents(messages, maxBytes: FileLimits.jsonBytes)
        let list: [ChatMessage]
        do { list = try JSONDecoder().decode([ChatMessage].self, from: data) }
        catch { throw ValidationError("\(messages): not a JSON list of {\"role\", \"content\"}") }
        let text = try t.render(messages: list, addGenerationPrompt: true)
        if json { try printJSON(["text": text]) } else { print(text, terminator: "") }
    }
}
