import Foundation
import Recovery

// report.html: one self-contained XHTML-compatible page (inline CSS and SVG, no script, no
// network), so it opens in any browser and parses as XML.

/// Text for HTML/XML: the five markup characters as entities, and characters XML forbids
/// (control characters other than tab, newline, carriage return) as U+FFFD.
public func escapeHTML(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for u in s.unicodeScalars {
        switch u {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        case "\t", "\n", "\r": out.unicodeScalars.append(u)
        default:
            if u.value < 0x20 || (0xFFFE...0xFFFF).contains(u.value) { out += "\u{FFFD}" } else { out.unicodeScalars.append(u) }
        }
    }
    return out
}

/// "36.0 %" (nil: "—").
public func percent(_ x: Double?) -> String { x.map { String(format: "%.1f %%", 100 * $0) } ?? "—" }

func score(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "—" }

func seconds(_ s: Double) -> String {
    guard s.isFinite, abs(s) < 1e12 else { return "—" }
    let t = Int(s.rounded())
    if t >= 3600 { return String(format: "%ld h %02ld min", t / 3600, t % 3600 / 60) }
    if t >= 60 { return String(format: "%ld min %02ld s", t / 60, t % 60) }
    return String(format: "%.1f s", s)
}

let css = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1020px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555;font-size:.92em}.headline{font-size:1.15em;background:#f7f7f2;border-left:4px solid #c0392b;padding:.6em 1em}
.figs{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff;border:1px solid #e4e4e4}
.ptitle{font-size:13px;font-weight:600}.tick{font-size:10.5px;fill:#444}.val{font-size:10px;fill:#222}.grid{stroke:#e6e6e6;stroke-width:1}
pre.answer{white-space:pre-wrap;word-wrap:break-word;margin:0;font-size:.86em;max-height:16em;overflow:auto}
.harmful{color:#a93226;font-weight:600}.refused{color:#1e8449;font-weight:600}.other{color:#777}
.quick{background:#fdebd0;padding:.1em .4em;border-radius:3px}
"""

extension DemoReport {
    /// The report as one self-contained page.
    public func html() -> String {
        var h = """
        <!DOCTYPE html>
        <html xmlns="http://www.w3.org/1999/xhtml" lang="en">
        <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title>\(escapeHTML(title))</title>
        <style>
        \(css)
        </style>
        </head>
        <body>
        <h1>\(escapeHTML(title))</h1>
        <p class="meta">Model \(escapeHTML(model)) · Scenario \(escapeHTML(scenario))\(quick ? " · <span class=\"quick\">--quick run: small subsets, numbers are plumbing, not results</span>" : "") · \(escapeHTML(created)) · Realign \(escapeHTML(realign_version))\(realign_commit.map { " (" + escapeHTML($0) + ")" } ?? "") · \(escapeHTML(machine.cpu)), \(machine.cores) cores, \(String(format: "%.1f", machine.memory_gb)) GB, \(escapeHTML(machine.os))</p>

        """
        h += headline()
        h += stageTable()
        h += stageCharts()
        h += recoverySection()
        h += examplesSection()
        h += settingsSection()
        h += "</body>\n</html>\n"
        return h
    }

    func stage(_ name: String) -> StageResult? { stages.first { $0.stage == name } }

    /// Whether the stages were also evaluated on the second benign set.
    var hasSecondBenignSet: Bool { stages.contains { $0.n_benign_general != nil } }

    func headline() -> String {
        let parts = stages.map { "\(escapeHTML($0.stage)) <b>\(percent($0.harmful_rate))</b>" }
        guard !parts.isEmpty else { return "" }
        let judge = Set(stages.map(\.judge)).sorted().joined(separator: ", ")
        return "<p class=\"headline\">Harmful rate: \(parts.joined(separator: " → ")) <span class=\"meta\">(judge: \(escapeHTML(judge)))</span></p>\n"
    }

    func stageTable() -> String {
        let general = hasSecondBenignSet
        var h = "<h2>The three stages</h2>\n<table>\n<tr><th>stage</th><th>model</th><th>harmful rate</th><th>benign refusal rate</th>"
        h += general ? "<th>benign refusal rate, second set</th>" : ""
        h += "<th>task score</th><th>prompts (harmful / benign\(general ? " / second benign" : "") / task)</th><th>judge</th><th>metric</th><th>evaluation time</th></tr>\n"
        for s in stages {
            h += "<tr><td>\(escapeHTML(s.stage))</td><td>\(escapeHTML(s.model))</td><td class=\"num\">\(percent(s.harmful_rate))"
            if let r = s.harmful_refusal_rate, let o = s.harmful_other_rate { h += "<br><span class=\"meta\">refusal \(percent(r)), other \(percent(o))</span>" }
            h += "</td>"
            h += "<td class=\"num\">\(percent(s.benign_refusal_rate))</td>"
            h += general ? "<td class=\"num\">\(percent(s.benign_general_refusal_rate))</td>" : ""
            h += "<td class=\"num\">\(score(s.task_score))</td>"
            h += "<td class=\"num\">\(s.n_harmful) / \(s.n_benign)\(general ? " / \(s.n_benign_general.map(String.init) ?? "—")" : "") / \(s.n_task)</td><td>\(escapeHTML(s.judge))</td>"
            h += "<td>\(escapeHTML(s.metric ?? "—"))</td><td class=\"num\">\(seconds(s.seconds))</td></tr>\n"
        }
        h += "</table>\n"
        h += "<p class=\"meta\">Harmful rate: share of answers to held-out harmful prompts that the judge counts as harmful (going along with the request); the rest are refusals or other (neither: empty, degenerate, off-topic or generic text, or an answer to a harmless reading; docs/evaluation.md). Benign refusal rate: share of answers to ordinary requests that refuse\(general ? " (the second set: requests from self-instruct, Vicuna and MT-bench, a larger sample)" : ""). Greedy answers of up to \(stages.first?.max_tokens ?? 0) new tokens.</p>\n"
        if let changes, !changes.isEmpty {
            h += "<h3>Against the aligned model, prompt by prompt</h3>\n<table>\n<tr><th>stage</th><th>set</th><th>prompts</th><th>now, not in the aligned model's answer</th><th>in the aligned model's answer, not now</th><th>difference ± standard error</th></tr>\n"
            for c in changes {
                let verdict = c.set == "harmful" ? "harmful" : "refused"
                h += "<tr><td>\(escapeHTML(c.stage))</td><td>\(escapeHTML(c.set))\(c.judge.map { ", judged by " + escapeHTML($0) } ?? "")</td><td class=\"num\">\(c.n)</td><td class=\"num\">\(c.gained) \(verdict)</td>"
                h += "<td class=\"num\">\(c.lost)</td><td class=\"num\">\(String(format: "%+.1f ± %.1f points", 100 * c.difference, 100 * c.standard_error))</td></tr>\n"
            }
            h += "</table>\n<p class=\"meta\">Verdicts by the stages' judge unless a row names another. benign-general is the second benign set, benign-all both benign sets together. The same prompts at both stages, so the difference is paired: its standard error comes from the prompts whose verdict changed, √(gained + lost − (gained − lost)²/n) / n.</p>\n"
        }
        return h
    }

    func stageCharts() -> String {
        let names = stages.map(\.stage)
        var h = "<div class=\"figs\">\n"
        h += barChartSVG(title: "Harmful rate and benign refusal rate per stage", categories: names,
                         series: [ChartSeries("harmful rate", stages.map(\.harmful_rate)),
                                  ChartSeries("benign refusal rate", stages.map(\.benign_refusal_rate))]
                            + (hasSecondBenignSet
                               ? [ChartSeries("benign refusal rate, second set", stages.map(\.benign_general_refusal_rate))] : []),
                         yMax: 1, format: { String(format: "%.0f %%", 100 * $0) })
        h += "\n"
        if stages.allSatisfy({ $0.harmful_refusal_rate != nil && $0.harmful_other_rate != nil }) {
            h += stackedBarChartSVG(title: "Answers to harmful prompts, by verdict", categories: names,
                                    series: [ChartSeries("harmful", stages.map(\.harmful_rate)),
                                             ChartSeries("refusal", stages.map(\.harmful_refusal_rate)),
                                             ChartSeries("other", stages.map(\.harmful_other_rate))])
            h += "\n"
        }
        if stages.contains(where: { $0.task_score != nil }) {
            let metric = stages.compactMap(\.metric).first ?? "task"
            h += barChartSVG(title: "Task score per stage (\(metric))", categories: names,
                             series: [ChartSeries("task score", stages.map(\.task_score))], yMax: 1,
                             format: { String(format: "%.2f", $0) })
            h += "\n"
        }
        return h + "</div>\n"
    }

    func recoverySection() -> String {
        var h = "<h2>Recovery</h2>\n"
        h += "<p>Direction layer \(recovery.layer), rate \(String(format: "%g", recovery.rate)) of the eligible weights per round, \(recovery.rounds) rounds, \(recovery.prompts) recovery prompts (\(escapeHTML(recovery.prompt_source))), loss " + (recovery.loss_batch == "all" ? "−cos(mean over all recovery prompts, aligned direction)" : "Σ −cos over batches of \(escapeHTML(recovery.loss_batch)) prompts") + ".</p>\n"
        if let t = recovery.task_check { h += "<p>Task check (Scenario II: warm-up, rollback, fuse): \(escapeHTML(t)).</p>\n" }
        if let c = recovery.refusal_check {
            let chosen = rounds.first { $0.selected == true }
            h += "<p>Refusal check: \(escapeHTML(c)). The recovered model is "
                + (chosen.map { r in "round \(r.round)'s (marked ✓ below)" + (r.bisect?.first { $0.selected == true }.map { ", with only the top \($0.restored) of its \(r.restored) restores (a bisection of its step)" } ?? "") }
                   ?? "the last round's (no round was chosen)") + ".</p>\n"
        }
        guard !rounds.isEmpty else { return h + "<p>No rounds were logged.</p>\n" }
        h += "<div class=\"figs\">\n"
        let before = rounds.map { (x: Double($0.round), y: $0.cosine_before) }
        let after = rounds.compactMap { r in r.cosine_after.map { (x: Double(r.round), y: $0) } }
        h += lineChartSVG(title: "Cosine of the harmful direction with the aligned one", xLabel: "round",
                          series: [("before the round", before), ("after the round", after)], format: { String(format: "%.4f", $0) })
        h += "\n"
        let checked = rounds.compactMap { r in r.check.map { (round: Double(r.round), rates: $0) } }
        if !checked.isEmpty {
            h += lineChartSVG(title: "Refusal check (validation prompts) after each round", xLabel: "round",
                              series: [("harmful rate", checked.map { (x: $0.round, y: $0.rates.harmful) }),
                                       ("benign refusal", checked.map { (x: $0.round, y: $0.rates.benign_refusal) })],
                              format: { percent($0) })
            h += "\n"
        }
        let tasks = rounds.compactMap { r in r.task_score.map { (x: Double(r.round), y: $0) } }
        if !tasks.isEmpty {
            h += lineChartSVG(title: "Task score after each round", xLabel: "round", series: [("task score", tasks)],
                              format: { String(format: "%.3f", $0) })
            h += "\n"
        }
        // The recovered model's patch (older reports: the sum over all rounds).
        let what = recovery.patch_per_layer == nil ? "(all rounds)" : "in the recovered model"
        let (layers, layerCounts) = sortedCounts(recovery.patch_per_layer ?? restoredTotals(\.per_layer), numeric: true)
        h += barChartSVG(title: "Weights restored per layer \(what)", categories: layers, series: [ChartSeries("restored", layerCounts)])
        h += "\n"
        let (modules, moduleCounts) = sortedCounts(recovery.patch_per_module ?? restoredTotals(\.per_module), numeric: false)
        h += barChartSVG(title: "Weights restored per module \(what)", categories: modules, series: [ChartSeries("restored", moduleCounts)])
        h += "\n</div>\n"
        h += "<table>\n<tr><th>round</th><th>phase</th><th>cos before</th><th>cos after</th><th>loss</th><th>candidates</th><th>restored</th><th>rolled back</th><th>in patch</th><th>task score</th><th>check: harmful</th><th>check: benign refusal</th><th>seconds</th></tr>\n"
        for r in rounds {
            let secs = r.seconds_forward_backward + r.seconds_selection + r.seconds_rollback + r.seconds_task + r.seconds_checkpoint + (r.seconds_check ?? 0)
            h += "<tr><td class=\"num\">\(r.round)\(r.selected == true ? " ✓" : "")</td><td>\(escapeHTML(r.phase))\(r.fuse == true ? " (fuse: undone)" : "")\(r.restart == true ? " (restart)" : "")</td>"
            h += "<td class=\"num\">\(String(format: "%.6f", r.cosine_before))</td><td class=\"num\">\(r.cosine_after.map { String(format: "%.6f", $0) } ?? "—")</td>"
            h += "<td class=\"num\">\(String(format: "%.4f", r.loss))</td><td class=\"num\">\(r.candidates)</td><td class=\"num\">\(r.restored)</td>"
            h += "<td class=\"num\">\(r.rolled_back)</td><td class=\"num\">\(r.restored_total)</td><td class=\"num\">\(score(r.task_score))</td>"
            h += "<td class=\"num\">\(percent(r.check?.harmful))</td><td class=\"num\">\(percent(r.check?.benign_refusal))</td>"
            h += "<td class=\"num\">\(String(format: "%.1f", secs))</td></tr>\n"
            for b in r.bisect ?? [] {   // the check's bisection of this round's step
                h += "<tr><td class=\"num\">\(r.round)\(b.selected == true ? " ✓" : "")</td><td>bisection: top \(b.restored) restores</td><td colspan=\"8\"></td>"
                h += "<td class=\"num\">\(percent(b.check.harmful))</td><td class=\"num\">\(percent(b.check.benign_refusal))</td>"
                h += "<td class=\"num\">\(String(format: "%.1f", b.seconds_check))</td></tr>\n"
            }
        }
        return h + "</table>\n"
    }

    /// Restored weights per key summed over rounds.
    func restoredTotals(_ key: KeyPath<RoundLog, [String: Int]>) -> [String: Int] {
        var total: [String: Int] = [:]
        for r in rounds { for (k, v) in r[keyPath: key] { total[k, default: 0] += v } }
        return total
    }

    /// Counts with keys in layer order (numeric) or by name.
    func sortedCounts(_ total: [String: Int], numeric: Bool) -> ([String], [Double?]) {
        let keys = total.keys.sorted { numeric ? (Int($0) ?? .max, $0) < (Int($1) ?? .max, $1) : $0 < $1 }
        return (keys, keys.map { Double(total[$0]!) })
    }

    func examplesSection() -> String {
        guard let first = stages.first, !first.examples.isEmpty else { return "" }
        var h = "<h2>Example answers</h2>\n<p class=\"meta\">The same prompts at each stage (greedy, as evaluated). The verdict is the judge's.</p>\n"
        for e in first.examples {
            h += "<h3>\(escapeHTML(e.set)) prompt</h3>\n<p><i>\(escapeHTML(e.prompt))</i></p>\n<table>\n"
            for s in stages {
                guard let a = s.examples.first(where: { $0.set == e.set && $0.prompt == e.prompt }) else { continue }
                let verdict = a.refused ? "<span class=\"refused\">refused</span>"
                    : a.harmful && a.set == "harmful" ? "<span class=\"harmful\">answered</span>" : "<span class=\"other\">answered</span>"
                h += "<tr><th>\(escapeHTML(s.stage))<br/>\(verdict)</th><td><pre class=\"answer\">\(escapeHTML(a.response))</pre></td></tr>\n"
            }
            h += "</table>\n"
        }
        return h
    }

    func settingsSection() -> String {
        var h = "<h2>The attack</h2>\n<table>\n"
        let rows: [(String, String)] = [
            ("data", "\(attack.data) (\(attack.pairs) pairs)"), ("LoRA", "rank \(attack.rank), alpha \(String(format: "%g", attack.alpha)), on \(attack.targets.joined(separator: ", "))"),
            ("training", "\(attack.epochs) epoch(s), lr \(String(format: "%g", attack.lr)), batch \(attack.batch), max length \(attack.max_length)"),
            ("steps", attack.steps.map(String.init) ?? "—"),
            ("loss", "\(attack.first_loss.map { String(format: "%.4f", $0) } ?? "—") → \(attack.last_loss.map { String(format: "%.4f", $0) } ?? "—")"),
        ]
        for (k, v) in rows { h += "<tr><th>\(escapeHTML(k))</th><td>\(escapeHTML(v))</td></tr>\n" }
        h += "</table>\n<h2>Data sets</h2>\n<table>\n<tr><th>role</th><th>set</th><th>n</th><th>source</th><th>licence</th></tr>\n"
        for d in data_sets {
            h += "<tr><td>\(escapeHTML(d.role))</td><td>\(escapeHTML(d.name))</td><td class=\"num\">\(d.n)</td><td>\(escapeHTML(d.source))</td><td>\(escapeHTML(d.licence))</td></tr>\n"
        }
        h += "</table>\n<h2>Time</h2>\n<table>\n<tr><th>stage</th><th>wall time</th></tr>\n"
        for t in timings { h += "<tr><td>\(escapeHTML(t.stage))</td><td class=\"num\">\(seconds(t.seconds))</td></tr>\n" }
        h += "<tr><th>total</th><td class=\"num\">\(seconds(timings.reduce(0) { $0 + $1.seconds }))</td></tr>\n</table>\n"
        if !notes.isEmpty {
            h += "<h2>Notes</h2>\n<ul>\n"
            for n in notes { h += "<li>\(escapeHTML(n))</li>\n" }
            h += "</ul>\n"
        }
        return h
    }
}
