"""Regulatory documents and whole-run orchestration (imports ``validation`` and ``cxr_device``).

The submission package rendered from a run (``submission``: device description, algorithm
description, validation plan, 510(k) summary, labeling, PCCP and postmarket skeletons, appendices,
SBOM) after the consistency check (``consistency``), with the device profile and its population,
sample size, reader agreement, risk file, SOUP list and SBOM, document control, requirements and
traceability (``trace``), and the pipeline that runs every step from one configuration (``run``,
``demo``).
"""

#: The steps of ``cxr-device run``, in order. Kept here, free of heavy imports, so the CLI can
#: offer them as choices without importing torch.
STEPS = ("synth", "cohort", "development", "eda", "train", "members", "evaluate", "assess", "submission")
