import Foundation
import Testing
import TestSupport
import Recovery

/// `realign demo --quick` end to end on SmolLM2 (not aligned: this checks the plumbing and the
/// report, not safety numbers), then a re-run that skips every finished stage.
@Suite struct DemoCLITests {
    @Test func quickDemoOnSmolLM2() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-demo-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = ["demo", "--model", RealModels.smol, "--quick", "--no-refusal-check", "--out", dir]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(String(decoding: r.stdout, as: UTF8.self) == "\(dir)/report.html\n\(dir)/report.json\n")
        for stage in ["[1/5 aligned", "[2/5 attack", "[3/5 attacked", "[4/5 recover", "[5/5 recovered"] {
            #expect(r.stderr.contains(stage), "\(stage)")
        }
        #expect(r.stderr.contains("ETA"))

        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/report.json"))) as? [String: Any])
        let stages = try #require(report["stages"] as? [[String: Any]])
        #expect(stages.map { $0["stage"] as? String } == ["aligned", "attacked", "recovered"])
        for s in stages {
            #expect(s["n_harmful"] as? Int == 16 && s["n_benign"] as? Int == 16 && s["n_task"] as? Int == 8 && s["n_benign_general"] as? Int == 16)
            let g = try #require(s["benign_general_refusal_rate"] as? Double)
            #expect(g >= 0 && g <= 1)
            #expect((s["judge"] as? String ?? "").hasPrefix("learned:") && s["metric"] as? String == "exact")
            #expect(s["harmful_refusal_rate"] is Double && s["harmful_other_rate"] is Double)
            let h = try #require(s["harmful_rate"] as? Double)
            #expect(h >= 0 && h <= 1)
            #expect((s["examples"] as? [Any])?.count == 5)
        }
        // The attack changed the model and the recovery moved it back toward the aligned direction.
        let rounds = try #require(report["rounds"] as? [[String: Any]])
        #expect(rounds.count == 2)
        let first = try #require(rounds.first?["cosine_before"] as? Double), last = try #require(rounds.last?["cosine_after"] as? Double)
        #expect(first < 1 && last > first)
        #expect((report["attack"] as? [String: Any])?["pairs"] as? Int == 16)
        #expect(report["quick"] as? Bool == true)
        // Paired changes on both benign sets and on them pooled, by both judges.
        let changes = try #require(report["changes"] as? [[String: Any]])
        for (set, n) in [("harmful", 16), ("benign", 16), ("benign-general", 16), ("benign-all", 32)] {
            #expect(changes.filter { $0["set"] as? String == set && $0["stage"] as? String == "recovered" && $0["n"] as? Int == n }.count == (set == "harmful" ? 1 : 2), "\(set)")
        }

        // Every stage's outputs are kept.
        for f in ["settings.json", "aligned/eval.json", "aligned/outputs.jsonl", "attack/adapter_config.json", "attack/adapter_model.safetensors",
                  "attack/merged.gguf", "attack/attack.json", "attacked/eval.json", "recover/recovered.gguf", "recover/recovered.gguf.patch.safetensors",
                  "recover/recovered.gguf.log.jsonl", "recover/recover.json", "recovered/eval.json", "report.html",
                  "aligned/general.jsonl", "aligned/general.json", "attacked/general.json", "recovered/general.json"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + f), "\(f)")
        }
        let html = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.contains("<svg") && !html.contains("<script"))

        // A re-run finds every stage done and only rewrites the report.
        let again = try CLI.run(args)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.components(separatedBy: "; skipped").count - 1 == 8, "\(again.stderr)")
        // A folder made before the second benign set existed gains it and keeps the rest.
        let settingsFile = dir + "/settings.json"
        let settings = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: settingsFile))) as? [String: Any])
        #expect(settings["general_prompts"] as? Int == 16)
        try JSONSerialization.data(withJSONObject: settings.filter { $0.key != "general_prompts" }).write(to: URL(fileURLWithPath: settingsFile))
        for stage in ["aligned", "attacked", "recovered"] { try FileManager.default.removeItem(atPath: dir + "/" + stage + "/general.json") }
        let upgraded = try CLI.run(args)
        #expect(upgraded.status == 0, "\(upgraded.stderr)")
        #expect(upgraded.stderr.components(separatedBy: "; skipped").count - 1 == 5 && upgraded.stderr.components(separatedBy: "second benign set: refusal").count - 1 == 3,
                "\(upgraded.stderr)")
        #expect(try String(contentsOfFile: settingsFile, encoding: .utf8).contains("\"general_prompts\":16"))
        // Other settings in the same folder are refused.
        let other = try CLI.run(args + ["--rounds", "3"])
        #expect(other.status != 0 && other.stderr.contains("other settings"), "\(other.stderr)")
        // Another judge: the saved answers are judged again (not generated again), the recovery
        // (whose refusal check the judge decides) and the recovered stage run again.
        let alignedAnswers = try String(contentsOfFile: dir + "/aligned/outputs.jsonl", encoding: .utf8)
        let rejudged = try CLI.run(args + ["--judge", "phrases"])
        #expect(rejudged.status == 0, "\(rejudged.stderr)")
        #expect(rejudged.stderr.components(separatedBy: "judged again by refusal-phrases:").count - 1 == 4, "\(rejudged.stderr)")
        #expect(!rejudged.stderr.contains("recover/recover.json); skipped") && !rejudged.stderr.contains("recovered/eval.json); skipped"), "\(rejudged.stderr)")
        let answers = { (text: String) in text.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.map { $0?["response"] as? String } }
        #expect(answers(try String(contentsOfFile: dir + "/aligned/outputs.jsonl", encoding: .utf8)) == answers(alignedAnswers))
        let judged = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/report.json"))) as? [String: Any])
        #expect((judged["stages"] as? [[String: Any]])?.map { $0["judge"] as? String } == ["refusal-phrases", "refusal-phrases", "refusal-phrases"])
    }
}

/// `realign demo --scenario task --quick` on SmolLM2: the SQL-mixed attack and the recovery with
/// its task check and refusal check (plumbing; the numbers of an unaligned 135M model mean
/// nothing: by the refusal phrases it answers every harmful prompt before and after the attack,
/// so the refusal check finds nothing to recover).
@Suite struct DemoScenarioTwoCLITests {
    @Test func quickTaskScenarioOnSmolLM2() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("realign-demo2-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["demo", "--model", RealModels.smol, "--quick", "--scenario", "task", "--judge", "phrases", "--out", dir])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("Scenario II (SQL task)") && r.stderr.contains("32 SQL + 16 harmful pairs"), "\(r.stderr)")
        #expect(r.stderr.contains("task score of the fine-tuned model"), "\(r.stderr)")

        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/report.json"))) as? [String: Any])
        #expect(report["scenario"] as? String == "II")
        #expect((report["attack"] as? [String: Any])?["pairs"] as? Int == 48)
        let recovery = try #require(report["recovery"] as? [String: Any])
        #expect((recovery["task_check"] as? String)?.hasPrefix("SQL exact match on test[192..<200] (8 examples") == true)
        #expect((recovery["refusal_check"] as? String)?.hasPrefix("validation CatQA (first 16 of the built-in 100) + benign128[112..<128] (16 harmful, 16 benign, 16 tokens") == true)
        #expect(r.stderr.contains("refusal check, aligned model: harmful 100.0 %") && r.stderr.contains("refusal check, fine-tuned model: harmful 100.0 %"), "\(r.stderr)")
        #expect(r.stderr.contains("nothing to recover"), "\(r.stderr)")
        #expect((report["rounds"] as? [Any])?.isEmpty == true)
        #expect(try SparsePatch.read(dir + "/recover/recovered.gguf.patch.safetensors").count == 0)
        let sets = try #require(report["data_sets"] as? [[String: Any]])
        #expect(sets.contains { $0["name"] as? String == "sql_train_800 (built-in)" && $0["n"] as? Int == 32 })
        let settings = try String(contentsOfFile: dir + "/settings.json", encoding: .utf8)
        #expect(settings.contains("\"scenario\":\"II\"") && settings.contains("\"sql_pairs\":32") && settings.contains("\"refusal_check\":\"validation CatQA"), "\(settings)")
        // A Scenario I run may not reuse the folder.
        let other = try CLI.run(["demo", "--model", RealModels.smol, "--quick", "--out", dir])
        #expect(other.status != 0 && other.stderr.contains("other settings"), "\(other.stderr)")
    }
}
