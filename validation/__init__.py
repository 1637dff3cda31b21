"""QA and verification (imports ``cxr_device``, never the reverse).

The DICOM-header rules engine with its default chest rules (``check-dicom``), performance
assessment - metrics, F1 threshold, patient bootstrap, subgroups, figures and the locked
bundle (``evaluate``) - and the clinic-side entry point (``predict``).
"""
