import Foundation
import Testing
import Evaluation
import Recovery

/// The shipped prompt sets: recovery, attack and evaluation prompts never overlap (after
/// whitespace collapsing and lower-casing), the SQL splits are disjoint, and the sets
/// compiled into the binary are the files under data/.
@Suite struct DataSetTests {
    static let dataDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data").path

    static func norm(_ s: String) -> String { s.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ") }
    static func prompts(_ rel: String) throws -> [String] { try readPromptsJSONL(dataDir + "/" + rel) }

    @Test func recoveryAttackAndEvaluationAreDisjoint() throws {
        let groups: [(String, [String])] = [
            ("recovery", try Self.prompts("recovery/donotanswer_256.jsonl") + RecoverySet.doNotAnswer256),
            ("attack", try Self.prompts("attack/beavertails_train_100.jsonl") + Self.prompts("attack/beavertails_train_500.jsonl")
                + DataSets.beaverTails100.map(\.prompt)),
            ("evaluation", try Self.prompts("eval/catqa_543.jsonl") + Self.prompts("eval/harmbench_200.jsonl")
                + Self.prompts("eval/benign_128.jsonl") + Self.prompts("eval/benign_general_410.jsonl")
                + DataSets.catqa110 + DataSets.benign128 + DataSets.benignGeneral),
            ("task", try Self.prompts("sql/sql_train_800.jsonl") + Self.prompts("sql/sql_test_200.jsonl")),
        ]
        #expect(groups.map(\.1.count) == [512, 700, 1929, 1000])
        for i in groups.indices {
            for j in groups.indices where j > i {
                let shared = Set(groups[i].1.map(Self.norm)).intersection(groups[j].1.map(Self.norm))
                #expect(shared.isEmpty, "\(groups[i].0) and \(groups[j].0) share \(shared.count): \(shared.prefix(3))")
            }
        }
    }

    @Test func sqlSplitsAreDisjointAndComplete() throws {
        let train = try TaskExample.readJSONL(Self.dataDir + "/sql/sql_train_800.jsonl")
        let test = try TaskExample.readJSONL(Self.dataDir + "/sql/sql_test_200.jsonl")
        #expect(train.count == 800 && test.count == 200)
        #expect(Set(train.map { Self.norm($0.prompt) }).isDisjoint(with: test.map { Self.norm($0.prompt) }))
        #expect(Set(train.map { Self.norm($0.prompt) }).count == 800)
        #expect(train == DataSets.sqlTrain800 && test == DataSets.sqlTest200)
    }

    /// The validation prompts that chose the demo's direction layer are CatQA prompts the demo never reports.
    @Test func validationPromptsAreOutsideTheReportedSet() throws {
        let val = try Self.prompts("eval/validation_catqa_100.jsonl").map(Self.norm)
        #expect(val.count == 100 && Set(val).count == 100)
        #expect(Set(val).isDisjoint(with: DataSets.catqa110.map(Self.norm)))
        #expect(Set(val).isSubset(of: try Self.prompts("eval/catqa_543.jsonl").map(Self.norm)))
    }

    @Test func builtInSetsAreTheFiles() throws {
        #expect(try Self.prompts("eval/catqa_110.jsonl") == DataSets.catqa110)
        #expect(try Self.prompts("eval/benign_128.jsonl") == DataSets.benign128)
        #expect(try Self.prompts("eval/benign_general_410.jsonl") == DataSets.benignGeneral)
        #expect(Set(DataSets.benignGeneral.map(Self.norm)).count == 410)
        #expect(try Self.prompts("eval/validation_catqa_100.jsonl") == DataSets.validationCatqa100)
        #expect(try TaskExample.readJSONL(Self.dataDir + "/attack/beavertails_train_100.jsonl") == DataSets.beaverTails100)
        // Two per CatQA subcategory, all distinct.
        #expect(Set(DataSets.catqa110.map(Self.norm)).count == 110)
    }
}
