"""``study.json``: what the device answered for each image of one study, and when.

One file per study folder (``OUT/<StudyInstanceUID>/study.json``), rewritten atomically under a
lock. It holds no patient data: UIDs, statuses, scores, result file names and times. Per image:

- ``status``, ``view``, ``probability``, ``decision``, ``refusal`` (the reason, for refused and
  unreadable images), the result files (``sr``, ``sc``) and their ``instance_number`` in the
  result series (numbered 1, 2, ... in the order the study's images were answered: unique
  within each series);
- ``source_sha256``: the digest of the dataset as received (its bytes after the file meta), the
  content a re-sent copy is compared with (:func:`content_digest`);
- times (UTC, milliseconds): ``received_at`` (the node's receipt; absent for files),
  ``answered_at`` (the SR written), ``forwarded_at`` (the PACS acknowledged it);
- the same instants on the monotonic clock, in seconds: ``received_monotonic`` and
  ``answered_monotonic`` on ``monotonic_clock``, ``forwarded_monotonic`` on ``forwarded_clock``
  (:func:`monotonic_clock`: the forward may come after a restart). Differences are only taken
  between times of one clock, so a wall clock set back, or a restart on another boot, never makes
  a negative or false duration;
- where the image came from, none of it patient data: ``calling_ae`` (the sender's AE title, from
  the association), ``manufacturer`` and ``model_name`` (Manufacturer and ManufacturerModelName of
  the dataset, the equipment), ``device_sha256`` (the device.json sha256 of the bundle that
  answered) and ``notified_by`` (``forward``: the node forwards results, so the notification is
  the PACS's acknowledgement; ``sr``: it does not, the notification is the SR written).

Per study: the ``chosen`` image (:data:`STUDY_RULE`), ``counts`` by status, ``conflicts`` (other
content sent under a SOPInstanceUID already answered: never mixed into its result), and the
study's ``first_received_at``, ``last_received_at``, ``first_answered_at`` and
``last_forwarded_at``, with ``last_received_monotonic``, ``last_answered_monotonic`` and
``last_forwarded_monotonic`` on ``monotonic_clock`` when every timed image of the study was timed
on one clock (else these are null), from which ``monitor`` computes time to notification.

Format ``cxr-device-study/3``; ``cxr-device-study/2`` files (without the monotonic times and the
origin of each image) are read as they are: what they lack is "not recorded".
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .atomic import atomic_write
from .header_check import UNREADABLE
from .pipeline import ACCEPTED, REFUSED

STUDY_JSON = "study.json"
FORMAT = "cxr-device-study/3"
#: Every format this module has written (a reader takes them all).
FORMATS = ("cxr-device-study/2", FORMAT)
STUDY_RULE = ("the accepted image with ViewPosition PA, else AP, else any accepted image; ties broken by the "
              "lowest SOPInstanceUID (compared number by number)")
NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflict"
_LOCK = threading.Lock()  # one writer at a time per process (the node's worker and its receivers)


def utc_now() -> str:
    """Now in UTC, ISO 8601 with milliseconds (``2026-12-04T08:00:00.123Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def monotonic_now() -> float:
    """The monotonic clock now, in seconds (microseconds kept)."""
    return round(time.monotonic(), 6)


def monotonic_clock() -> str:
    """Which monotonic clock :func:`monotonic_now` reads: ``boot:<id>`` on Linux (the clock counts
    from boot and is shared by every process of that boot), else ``process:<pid>:<start>`` (one
    process only)."""
    return _CLOCK


def _clock_id() -> str:
    try:
        boot = open("/proc/sys/kernel/random/boot_id", encoding="ascii").read().strip()
        if boot:
            return f"boot:{boot}"
    except OSError:
        pass
    return f"process:{os.getpid()}:{time.time_ns()}"


_CLOCK = _clock_id()


def content_digest(data: bytes) -> str:
    """sha256 of a DICOM file's dataset: the bytes after the preamble and file meta when the file
    has them (so the same dataset from two senders, or stored twice, has one digest), else of
    all the bytes."""
    offset = 0
    if len(data) >= 144 and data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00" \
            and data[136:138] == b"UL":
        offset = 144 + struct.unpack("<I", data[140:144])[0]
    return hashlib.sha256(data[offset:]).hexdigest()


def file_digest(path: str | Path) -> str | None:
    """:func:`content_digest` of a file; None when it cannot be read."""
    try:
        return content_digest(Path(path).read_bytes())
    except OSError:
        return None


@dataclass(frozen=True)
class Known:
    """What a study record says of a SOPInstanceUID: ``new`` (not answered), ``duplicate`` (the
    same content answered) or ``conflict`` (other content answered under this UID)."""

    state: str
    entry: dict | None = None


def read(folder: Path) -> dict:
    """The study record of ``folder`` (an empty one when there is none or it cannot be read)."""
    try:
        record = json.loads((folder / STUDY_JSON).read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def lookup(folder: Path, sop_instance_uid: str, digest: str | None) -> Known:
    """Whether ``sop_instance_uid`` was answered in this study, and with the same content."""
    entry = {i.get("sop_instance_uid"): i for i in read(folder).get("images", [])}.get(sop_instance_uid)
    if entry is None:
        return Known(NEW)
    same = digest is None or entry.get("source_sha256") in (None, digest)
    return Known(DUPLICATE if same else CONFLICT, entry)


def next_instance_numbers(folder: Path) -> tuple[int, int]:
    """The next free InstanceNumber of the study's SR series and of its SC series."""
    images = read(folder).get("images", [])
    sr = max((i.get("sr_instance_number") or 0 for i in images), default=0)
    sc = max((i.get("sc_instance_number") or 0 for i in images), default=0)
    return sr + 1, sc + 1


def record_answer(folder: Path, study_uid: str, entry: dict) -> Path:
    """Add the answer for one image (``entry`` with at least ``sop_instance_uid``, ``status``
    and ``view``) and recompute the study's choice, counts and times."""
    with _LOCK:
        record = read(folder)
        images = {i["sop_instance_uid"]: i for i in record.get("images", [])}
        images[entry["sop_instance_uid"]] = {**images.get(entry["sop_instance_uid"], {}), **entry}
        record["images"] = sorted(images.values(), key=lambda i: _uid_key(i["sop_instance_uid"]))
        return _write(folder, study_uid, record)


def record_conflict(folder: Path, study_uid: str, conflict: dict) -> Path:
    """Note other content received under an answered SOPInstanceUID (kept aside, not answered)."""
    with _LOCK:
        record = read(folder)
        record["conflicts"] = [*record.get("conflicts", []), conflict]
        return _write(folder, study_uid, record)


def record_forwarded(folder: Path, result_file: str, when: str, when_monotonic: float | None = None) -> None:
    """Note when the PACS acknowledged a result file of this study (UTC and, when given, the
    monotonic clock of this process)."""
    with _LOCK:
        record = read(folder)
        changed = False
        for image in record.get("images", []):
            if result_file in (image.get("sr"), image.get("sc")) and not image.get("forwarded_at"):
                image["forwarded_at"] = when
                if when_monotonic is not None:
                    image["forwarded_monotonic"] = when_monotonic
                    image["forwarded_clock"] = monotonic_clock()
                changed = True
        if changed:
            _write(folder, record.get("study_instance_uid", ""), record)


def _write(folder: Path, study_uid: str, record: dict) -> Path:
    images = record.get("images", [])
    chosen = choose_study_image(images)
    times = {key: [i[source] for i in images if i.get(source)] for key, source in
             (("received", "received_at"), ("answered", "answered_at"), ("forwarded", "forwarded_at"))}
    summary = {
        "format": FORMAT, "study_instance_uid": study_uid, "images": images,
        "chosen": chosen["sop_instance_uid"] if chosen else None, "rule": STUDY_RULE,
        "counts": {s: sum(i.get("status") == s for i in images) for s in (ACCEPTED, REFUSED, UNREADABLE)},
        "conflicts": record.get("conflicts", []),
        "first_received_at": min(times["received"], default=None),
        "last_received_at": max(times["received"], default=None),
        "first_answered_at": min(times["answered"], default=None),
        "last_forwarded_at": max(times["forwarded"], default=None),
        **study_monotonic(images),
    }
    path = folder / STUDY_JSON
    atomic_write(path, (json.dumps(summary, indent=2) + "\n").encode())
    return path


def study_monotonic(images: list[dict]) -> dict:
    """``monotonic_clock`` and the latest received, answered and forwarded monotonic times of a
    study's images, when every monotonic time of the study was read on one clock; nulls when none
    was, or when they were read on several (a restart on another boot)."""
    keys = ("received", "answered", "forwarded")
    clocks = {i.get("monotonic_clock") for i in images if i.get("received_monotonic") is not None
              or i.get("answered_monotonic") is not None}
    clocks |= {i.get("forwarded_clock") for i in images if i.get("forwarded_monotonic") is not None}
    one = len(clocks) == 1 and None not in clocks
    out = {"monotonic_clock": next(iter(clocks)) if one else None}
    for key in keys:
        values = [i[f"{key}_monotonic"] for i in images if i.get(f"{key}_monotonic") is not None]
        out[f"last_{key}_monotonic"] = max(values) if one and values else None
    return out


def _uid_key(uid: str) -> tuple:
    try:
        return (0, tuple(int(part) for part in uid.split(".")))
    except ValueError:
        return (1, uid)


def choose_study_image(images: list[dict]) -> dict | None:
    """The image that stands for the study (:data:`STUDY_RULE`), or None when no image was
    accepted. ``images``: dicts with ``sop_instance_uid``, ``status`` and ``view``."""
    accepted = [i for i in images if i.get("status") == ACCEPTED]
    rank = {"PA": 0, "AP": 1}
    return min(accepted, key=lambda i: (rank.get(str(i.get("view", "")).upper(), 2),
                                        _uid_key(str(i["sop_instance_uid"]))), default=None)
