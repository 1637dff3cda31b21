"""Regulatory documents and whole-run orchestration (imports ``validation`` and ``cxr_device``).

The algorithm description and validation plan rendered from a run (``submission``), the device
profile, sample size, reader agreement, SOUP list, requirements and traceability (``trace``),
and the pipeline that runs every step from one configuration (``run``, ``demo``).
"""

#: The steps of ``cxr-device run``, in order. Kept here, free of heavy imports, so the CLI can
#: offer them as choices without importing torch.
STEPS = ("synth", "cohort", "eda", "train", "evaluate", "assess", "submission")
