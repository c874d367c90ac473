// Written by `realign train-judge --swift` from data/judge/judge.json; do not edit.
let shippedJudgeJSON = #"""

"""#
