import ArgumentParser
import Foundation
import Formats
import Model
import Recovery
import Tensor

struct ApplyPatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply-patch",
        abstract: "Write the recovered model: a fine-tuned model with a recovery patch applied.",
        discussion: """
        The output is in the fine-tuned model's format family. From a GGUF: a GGUF where every tensor the \
        patch does not touch keeps its type and bytes; touched tensors are stored as F32 (lossless), or as \
        F16, Q8_0 or Q4_K with --dtype (rounds them). From an HF folder: a folder with the same shards, dtypes and index, \
        only touched tensors changed (a restored value a BF16/F16 tensor cannot hold exactly is rounded), and \
        the tokenizer, config and other non-weight files copied. The patch must have been made for FINETUNED \
        (same size and fingerprint). With --adapter (a recovery of FINETUNED + a LoRA adapter), the output is the \
        merged model with the patch, exactly as recover wrote it; the adapted tensors are stored like patched ones.
        """)

    @Argument(help: "The fine-tuned model the patch was made for (GGUF file, HF folder or embedded model name).") var finetuned: String
    @Argument(help: "The patch file (.safetensors, from a recovery).") var patch: String
    @Option(help: "The PEFT LoRA adapter the recovery merged into FINETUNED (recover --adapter), if any.") var adapter: String?
    @Option(help: "Where to write the recovered model (a .gguf file, or a folder for an HF model).") var out: String
    @Option(help: ggufOutputTypeHelp) var dtype: String = "f32"
    @Flag(help: "Replace OUT if it exists.") var overwrite = false
    @Flag(help: "Apply even if FINETUNED's size or fingerprint differs from the patch's record (shapes are still checked).") var ignoreIdentity = false
    @Flag(help: "Print a JSON summary.") var json = false

    func validate() throws {
        _ = try ggufOutputType(dtype)
    }

    func run() throws {
        try checkOutputPath(out, kind: isDirectory(self.finetuned) ? .folder : .file, inputs: [self.finetuned, patch] + (adapter.map { [$0] } ?? []))
        let finetuned = try ModelStore.resolve(self.finetuned)
        let p = try SparsePatch.read(patch)
        do { try ModelOutput.check(p, against: finetuned, adapter: adapter, ignoreIdentity: ignoreIdentity) } catch let e as PatchError {
            throw ValidationError("\(patch) does not fit \(finetuned): \(e)")
        }
        let s = try ModelOutput.write(finetuned: finetuned, adapter: adapter, patch: p, to: out, ggufType: try ggufOutputType(dtype),
                                      overwrite: overwrite) { progressLine($0) }
        progressLine("wrote \(out)", final: true)
        if json { try printJSON(s); return }
        print("\(s.out): \(s.format), \(s.restored) weights restored in \(s.patched_tensors) tensors" +
              (s.inexact > 0 ? ", \(s.inexact) rounded" : ""))
        for n in s.notes { print("  note: \(n)") }
    }
}
