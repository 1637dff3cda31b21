"""What a DICOM node wrote, read for monitoring: its study records, log and status; never an image.

A node folder (``cxr-device serve --out DIR``) holds ``results/<StudyInstanceUID>/study.json``
(:mod:`cxr_device.runtime.study_record`), ``node.log`` (one JSON object per line) and
``status.json``. Every study record is either read or listed with the reason it could not be
(unreadable, not JSON, not a study record, an unknown format); studies are named by the hash of
their UID, as the node's log names them, so nothing here identifies a patient. With ``since``,
studies last received (or, without a receipt, first answered) before it are counted as outside
the window, and so are log lines; a study without any time cannot be placed in a window.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cxr_device.errors import CxrDeviceError
from cxr_device.runtime.node import NODE_LOG, RESULTS, STATUS_JSON, NodeError, hashed, read_status
from cxr_device.runtime.study_record import FORMATS, STUDY_JSON

#: node.log events that monitor counts (the others are listed by name with their count).
LOG_EVENTS = ("started", "stopped", "worker_died", "store_refused", "association_accepted", "association_rejected",
              "association_aborted", "association_without_context", "not_answered",
              "conflict", "duplicate", "forward_failed", "forwarded", "answered", "received")


@dataclass
class NodeRecords:
    """The study records, log summary and status of one node folder."""

    folder: Path
    studies: list[dict] = field(default_factory=list)  # each: {"study": hash, "record": the study.json content}
    unreadable: list[dict] = field(default_factory=list)  # each: {"study": hash, "reason": ...}
    outside_window: int = 0
    undated: int = 0
    log: dict = field(default_factory=dict)
    status: dict | None = None


def parse_since(text: str | None) -> datetime | None:
    """``--since``: a date (``2026-12-01``, midnight UTC) or an ISO 8601 time; None without one."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CxrDeviceError(f"--since {text!r}: expected a date (YYYY-MM-DD, UTC) or an ISO 8601 time such as "
                             "2026-12-01T08:00:00Z") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def study_time(record: dict) -> datetime | None:
    """When a study happened for monitoring: its last image received, else its first answer (UTC)."""
    for key in ("last_received_at", "first_answered_at"):
        value = record.get(key)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return None


def read_node(folder: str | Path, since: datetime | None = None, progress: bool = False) -> NodeRecords:
    """Every study record, the log and the status of a node folder (see the module)."""
    out = NodeRecords(Path(folder))
    if not out.folder.is_dir():
        raise NodeError(f"{out.folder}: no such folder; give the node's folder (the --out of cxr-device serve)")
    results = out.folder / RESULTS
    if not results.is_dir() and not (out.folder / STATUS_JSON).is_file():
        raise NodeError(f"{out.folder}: neither {RESULTS}/ nor {STATUS_JSON}: not the folder of a cxr-device node "
                        "(the --out of cxr-device serve)")
    if (out.folder / STATUS_JSON).is_file():
        try:
            out.status = read_status(out.folder)
        except NodeError as err:  # the records can still be read: say why the status is missing
            out.status = {"state": "unreadable", "note": str(err)}
    try:
        folders = sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    except OSError as err:
        raise NodeError(f"{results}: cannot be read ({err.strerror or err}); check its permissions") from None
    for study_folder in _progress(folders, progress):
        _read_study(study_folder, since, out)
    out.log = read_log(out.folder / NODE_LOG, since)
    return out


def _read_study(folder: Path, since: datetime | None, out: NodeRecords) -> None:
    name = hashed(folder.name)
    path = folder / STUDY_JSON
    if not path.exists():
        out.unreadable.append({"study": name, "reason": f"no {STUDY_JSON} in the study's result folder"})
        return
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        out.unreadable.append({"study": name, "reason": f"cannot be read ({getattr(err, 'strerror', None) or err})"})
        return
    except ValueError as err:
        out.unreadable.append({"study": name, "reason": f"not JSON ({str(err)[:120]})"})
        return
    problem = _record_problem(record)
    if problem:
        out.unreadable.append({"study": name, "reason": problem})
        return
    moment = study_time(record)
    if since is not None and moment is None:
        out.undated += 1
        return
    if since is not None and moment < since:
        out.outside_window += 1
        return
    out.studies.append({"study": name, "record": record, "time": moment})


def _record_problem(record) -> str | None:
    """Why a study.json cannot be used, or None."""
    if not isinstance(record, dict):
        return f"not a study record (a JSON {type(record).__name__}, not an object)"
    if record.get("format") not in FORMATS:
        return f"unknown format {str(record.get('format'))[:40]!r} (expected one of {', '.join(FORMATS)})"
    images = record.get("images")
    if not isinstance(images, list) or not all(isinstance(i, dict) and isinstance(i.get("status"), str)
                                               for i in images):
        return "its images are not a list of answers with a status"
    return None


def read_log(path: Path, since: datetime | None) -> dict:
    """Counts of the node log's events (in the window), store refusals by reason code, and the
    lines that could not be read; an absent log is reported as such."""
    summary = {"file": NODE_LOG, "present": path.is_file(), "events": {}, "store_refused_by_reason": {},
               "unreadable_lines": 0, "lines_outside_window": 0}
    if not summary["present"]:
        return summary
    events, refused = Counter(), Counter()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                event = _log_line(line)
                if event is None:
                    summary["unreadable_lines"] += int(bool(line.strip()))
                    continue
                moment = study_time({"last_received_at": event.get("ts")})
                if since is not None and (moment is None or moment < since):
                    summary["lines_outside_window"] += 1
                    continue
                name = str(event.get("event"))[:40]
                events[name if name in LOG_EVENTS else "other"] += 1
                if name == "store_refused":
                    refused[str(event.get("reason_code"))[:40]] += 1
    except OSError as err:
        raise NodeError(f"{path}: cannot be read ({err.strerror or err}); check its permissions") from None
    summary["events"] = dict(sorted(events.items()))
    summary["store_refused_by_reason"] = dict(sorted(refused.items()))
    return summary


def _log_line(line: str) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _progress(items: list, show: bool):
    """``items``, with a progress bar on the terminal only when reading them is slow (after 2 s)."""
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="study records", unit="study", delay=2.0, leave=False)
