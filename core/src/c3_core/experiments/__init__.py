"""The paper's experiments scaled to the embedded cohorts (`c3 experiment`, `nox -s paper`).

Modules: :mod:`~c3_core.experiments.shifts` (held-out shift families and the training
neighbourhood without them), :mod:`~c3_core.experiments.rows` (the compared methods),
:mod:`~c3_core.experiments.sizes` (quick / default / full budgets),
:mod:`~c3_core.experiments.context` (one modality's data, neighbourhoods and teacher),
:mod:`~c3_core.experiments.cases` (in-memory and shifted test sets),
:mod:`~c3_core.experiments.runs` (train and evaluate one row and seed),
:mod:`~c3_core.experiments.tta` (the TTA row's model), :mod:`~c3_core.experiments.casemetrics`
(metrics and bootstrap CIs from per-case rows), :mod:`~c3_core.experiments.tables` (Markdown),
:mod:`~c3_core.experiments.hardware` and :mod:`~c3_core.experiments.paper` (the command).
"""
