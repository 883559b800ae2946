"""The paper's study (Langer, Pozdnyakov & Ceriotti 2024) for one model: ``symprobe study``.

Modules: :mod:`.variants` (the model variants and the batched runs of them), :mod:`.gas`, :mod:`.liquid` and
:mod:`.ice` (the experiments as protocols), :mod:`.plan` (costs and run lengths), :mod:`.stages` (the cached
stages), :mod:`.findings` (the paper's claims tested), :mod:`.paper` (its numbers, cited), :mod:`.report` (HTML)
and :mod:`.run` (:func:`run_study`, :func:`plan_study`).
"""

from symprobe.study.findings import findings
from symprobe.study.paper import PAPER
from symprobe.study.plan import Plan, make_plan, parse_mts
from symprobe.study.run import SCHEMA, STAGES, known_answer_model, plan_study, run_study

__all__ = ["PAPER", "SCHEMA", "STAGES", "Plan", "findings", "known_answer_model", "make_plan", "parse_mts", "plan_study", "run_study"]
