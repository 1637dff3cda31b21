"""Time to notification of a study, from the node's own record (``study.json``).

For a triage device the notification is what the reading workflow sees: the result acknowledged
by the PACS when the node forwards results (``notified_by: forward``), else the SR written
(``notified_by: sr``). A study's time to notification is the latest notification of its images
minus the arrival of its last image, both on the monotonic clock of the node
(:mod:`cxr_device.runtime.study_record`), and only when every time used was read on one clock.

A study is not measured - and the reason is counted - when an image has no monotonic receipt time
(files of ``cxr-device-study/2``, results of ``predict``, images received before a restart), a
forwarded result is not yet acknowledged, or its times come from two clocks (a restart on another
boot).
"""
from __future__ import annotations

import numpy as np

FORWARD, SR = "forward", "sr"
PERCENTILES = "numpy.percentile, linear interpolation between order statistics (Hyndman and Fan type 7)"
NO_RECEIPT = ("an image has no monotonic receipt or answer time (study.json /2, predict results, or received before "
              "a restart)")
NOT_NOTIFIED = "a result is not yet acknowledged by the PACS (forwarding pending)"
NO_BASIS = "an image does not record how it is notified (study.json /2 or predict results)"
TWO_CLOCKS = "its times were read on more than one monotonic clock (a restart on another boot)"
NO_IMAGE = "no answered image"


def study_ttn(record: dict) -> tuple[float | None, str | None, str | None]:
    """(seconds, basis, reason): the study's time to notification and what the notification is
    (``forward``, ``sr`` or ``mixed``), or None and the reason it cannot be measured."""
    images = [i for i in record.get("images") or [] if isinstance(i, dict)]
    if not images:
        return None, None, NO_IMAGE
    if any(i.get("received_monotonic") is None for i in images):
        return None, None, NO_RECEIPT
    bases = {i.get("notified_by") for i in images}
    if not bases <= {FORWARD, SR}:
        return None, None, NO_BASIS
    clocks, notified = {i.get("monotonic_clock") for i in images}, []
    for image in images:
        if image["notified_by"] == FORWARD:
            if image.get("forwarded_monotonic") is None:
                return None, None, NOT_NOTIFIED
            clocks.add(image.get("forwarded_clock"))
            notified.append(image["forwarded_monotonic"])
        else:
            notified.append(image.get("answered_monotonic"))
    if None in notified or None in clocks:
        return None, None, NO_RECEIPT
    if len(clocks) != 1:
        return None, None, TWO_CLOCKS
    basis = bases.pop() if len(bases) == 1 else "mixed"
    return float(max(notified) - max(i["received_monotonic"] for i in images)), basis, None


def summary(seconds: list[float]) -> dict:
    """``n``, ``p50_s``, ``p95_s`` and ``max_s`` of times to notification (None without any)."""
    values = np.asarray(seconds, dtype=float)
    if not len(values):
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None, "percentiles": PERCENTILES}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": int(len(values)), "p50_s": float(p50), "p95_s": float(p95), "max_s": float(values.max()),
            "percentiles": PERCENTILES}
