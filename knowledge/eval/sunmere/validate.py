"""Check the Sunmere held-out set with the shared validator (:mod:`knowledge.eval.validate`): every
file parses, every question names a document the loaders produce, every `fact` is in that document
under the evaluator's own folding, the halves are the README's split, and the counts meet the brief.

Run from the repository root: ``python -m knowledge.eval.sunmere.validate``.
"""

import sys
from pathlib import Path

from knowledge.eval.validate import HeldOutSet, run

# The floor each count must reach (the brief of this set; issue 11 asks for 20 EN / 10 ZH documents,
# 150 questions with a fact and 50 out of scope).
SUNMERE = HeldOutSet(
    directory=Path(__file__).parent,
    seed="sunmere-11",
    strata=("lang", "out_of_scope", "doc_lang", "oos_kind"),
    minimum={"documents en": 22, "documents zh": 11, "in scope": 170, "in scope en": 110, "in scope zh": 60,
             "cross-lingual en -> zh": 5, "cross-lingual zh -> en": 5,
             "out of scope": 64, "out of scope en": 40, "out of scope zh": 24},
)


def main() -> int:
    return run(SUNMERE)


if __name__ == "__main__":
    sys.exit(main())
