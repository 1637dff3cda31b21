"""The locked device and its runtime: what a hospital runs next to its PACS.

The bundle (weights, calibration, threshold, input rules; hashes and an optional Ed25519
signature), the input-rules engine and its default rules, the per-input header check, the
pipeline that gates, scores and explains one input (a path, bytes or a pydicom Dataset, parsed
once), DICOM results, and the commands that use them (predict, keygen, sign, verify).
"""
