"""QA and verification (imports ``cxr_device``, never the reverse).

``check-dicom`` QA reports over the device's own rules engine; performance assessment - metrics,
closed-form and patient-bootstrap intervals, calibration, threshold policies, subgroups,
figures - for the internal evaluation of a trained run (``evaluate``, which locks the bundle)
and the standalone assessment of a locked bundle on data it has never seen (``assess``).
"""
