"""QA and verification (imports ``cxr_device``, never the reverse).

Planned here (issues #3 and #5): the DICOM-header rules engine with its default chest
rules, and performance assessment (metrics, F1 threshold, bootstrap CIs, subgroups).
Nothing is implemented yet; the package exists so the layout and the dependency arrows
``fda_submission -> validation -> cxr_device`` are fixed from the start.
"""
