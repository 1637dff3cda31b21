"""Read NIH ChestX-ray14 metadata in any of its circulating layouts into one typed table.

Layouts handled:

* the 2020 revision (integer ages) - ``Data_Entry_2017_v2020.csv``;
* the original 2017 release - ages with a unit suffix (``058Y``, ``001M``, ``003D``), a few
  implausible ages (148, 414 years) and a trailing empty column;
* the "sample" release - ``OriginalImageWidth``/``OriginalImagePixelSpacing_x`` style names and
  zero-padded patient ids (``00000013``).

The bracketed NIH header ``OriginalImage[Width,Height]`` splits into two CSV fields; both come
out as properly named columns (``original_width``, ``original_height``).

Rows that cannot be used are excluded with a reason (see :mod:`cxr_device.exclusions`); a file
that cannot be used at all raises :class:`~cxr_device.errors.MetadataError`.
"""
from __future__ import annotations

import csv
import gzip
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import exclusions as ex
from .ages import parse_age_years
from .errors import MetadataError
from .findings import FINDING_COLUMNS, NIH_FINDINGS, TARGET, canonical_finding

#: Ages above this many years are data-entry errors (the 2017 release has 148, 414, ...).
MAX_PLAUSIBLE_AGE = 120.0
KNOWN_SEXES = {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"}
KNOWN_VIEWS = {"PA": "PA", "AP": "AP", "LL": "LL", "LATERAL": "LL", "LAT": "LL"}

# Header names are matched after lower-casing and dropping everything but letters and digits,
# so "OriginalImage[Width" -> "originalimagewidth" and "Height]" -> "height".
_ALIASES = {
    "imageindex": "image_id",
    "findinglabels": "finding_labels",
    "followup": "follow_up",
    "patientid": "patient_id",
    "patientage": "age_raw",
    "patientgender": "sex",
    "patientsex": "sex",
    "viewposition": "view",
    "originalimagewidth": "original_width",
    "originalimageheight": "original_height",
    "height": "original_height",
    "originalimagepixelspacingx": "pixel_spacing_x",
    "originalimagepixelspacingy": "pixel_spacing_y",
    "y": "pixel_spacing_y",
}
#: canonical column -> the NIH header name a user will recognise in error messages
REQUIRED = {
    "image_id": "Image Index",
    "finding_labels": "Finding Labels",
    "patient_id": "Patient ID",
    "age_raw": "Patient Age",
    "sex": "Patient Gender",
    "view": "View Position",
}
_NUMERIC_EXTRAS = ("original_width", "original_height", "pixel_spacing_x", "pixel_spacing_y")

#: Column order of every cohort table (dataset-specific extras follow).
CORE_COLUMNS = [
    "dataset",
    "image_id",
    "patient_id",
    "follow_up",
    "age_years",
    "sex",
    "view",
    "path",
    TARGET,
    "finding_labels",
]


@dataclass
class MetadataTable:
    """One typed table per dataset plus everything that was left out of it, and why."""

    frame: pd.DataFrame
    exclusions: ex.ExclusionLog = field(default_factory=ex.ExclusionLog)
    source: dict = field(default_factory=dict)


def read_nih_metadata(path: str | Path) -> MetadataTable:
    """Read an NIH metadata CSV (optionally ``.gz``) into a validated :class:`MetadataTable`.

    Output columns: ``dataset, image_id, patient_id (int), follow_up, age_years (float), sex,
    view, path ('' until resolved), pneumonia (0/1), finding_labels``, one 0/1 column per NIH
    finding, the original size/spacing when present, and ``source_line``.
    """
    path = Path(path)
    header, rows, lines, malformed = _read_rows(path)
    frame, ignored = _named_frame(path, header, rows)
    if not rows and not malformed:
        raise MetadataError(f"{path}: no data rows after the header line (one row per image is expected); "
                            "check that this is the right file and that it is complete")
    frame["source_line"] = np.asarray(lines, dtype=np.int64)

    layout = _layout(header, frame["age_raw"])
    log = ex.ExclusionLog()
    log.add_records(malformed)
    frame = _validate(frame, log)
    source = {
        "kind": "nih_metadata",
        "path": str(path),
        "layout": layout,
        "rows_read": len(rows) + len(malformed),
        "ignored_columns": ignored,
    }
    return MetadataTable(frame=frame, exclusions=log, source=source)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int], list[dict]]:
    """Split the file into header, well-formed rows (with line numbers) and malformed rows.

    Every non-blank line after the header becomes a row or a malformed-row record: an
    unterminated quote excludes the line where it opened, and the lines after it are read again
    one by one instead of being swallowed into one field.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[list[str]] = []
    lines: list[int] = []
    malformed: list[dict] = []
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
            records = _records(handle)
            _, header, problem = next(records, (1, [], None))
            if problem:
                raise MetadataError(f"{path}: line 1 (the header) {problem.text}; fix the header line")
            if not header:
                raise MetadataError(f"{path}: empty file, expected an NIH metadata header")
            width = len(header)
            for line, fields, problem in records:
                if problem is None:
                    n = len(fields)
                    if n == width:
                        rows.append(fields)
                        lines.append(line)
                        continue
                    if n > width and not any(f.strip() for f in fields[width:]):
                        rows.append(fields[:width])  # trailing empty column(s)
                        lines.append(line)
                        continue
                    if n == 0:
                        continue  # blank line
                    first, detail = fields[0].strip(), f"expected {width} comma-separated fields as in the header, found {n}"
                else:
                    first, detail = problem.first_field, problem.text
                    if problem.n_lines > 1:
                        detail += f"; this line is excluded and the {problem.n_lines - 1} line(s) after it were " \
                                  "read again one by one"
                malformed.append({"source_line": line, "image_id": first, "reason": ex.MALFORMED_ROW,
                                  "detail": f"{path.name} line {line}: {detail}"})
    except FileNotFoundError:
        raise MetadataError(f"{path}: metadata file not found") from None
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as err:
        raise MetadataError(f"{path}: cannot read as a CSV file: {err}") from None
    return header, rows, lines, malformed


_LINE_ENDS = ("\n", "\r")


@dataclass(frozen=True)
class _LineProblem:
    """Why one physical line could not be read as a CSV record."""

    text: str
    n_lines: int  # physical lines the csv module read for the record (more than 1: unterminated quote)
    first_field: str


def _records(handle) -> Iterator[tuple[int, list[str], _LineProblem | None]]:
    """(line number, fields, problem) for every CSV record of ``handle``, one physical line each.

    NIH metadata never has a line break inside a field, so a record that runs over several lines
    is an unterminated quote: its first line is reported as a problem and the lines after it are
    parsed again, so that no row is swallowed into a quoted field. The common case (no such
    record) runs at the csv module's speed; from the first irregular record on, the file is
    re-read from that line, line by line.
    """
    last = [""]

    def tracked():
        for text in handle:
            last[0] = text
            yield text

    reader, line = csv.reader(tracked()), 0
    try:
        for fields in reader:  # the last line of a file without a final line break is checked line by line
            if reader.line_num != line + 1 or (fields and fields[-1].endswith(_LINE_ENDS)) \
                    or not last[0].endswith(_LINE_ENDS):
                break
            line += 1
            yield line, fields, None
        else:
            return
    except csv.Error:
        pass
    handle.seek(0)
    for _ in range(line):
        next(handle)
    yield from _records_line_by_line(handle, line + 1)


class _PushBack:
    """The lines of a file, with lines that can be put back in front to be read again."""

    def __init__(self, handle) -> None:
        self.handle, self.pushed = handle, deque()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return self.pushed.popleft() if self.pushed else next(self.handle)


def _records_line_by_line(handle, line: int) -> Iterator[tuple[int, list[str], _LineProblem | None]]:
    """:func:`_records` from ``line`` on, keeping the text of each record to read it again."""
    source = _PushBack(handle)
    while True:
        consumed: list[str] = []

        def feed():
            for text in source:
                consumed.append(text)
                yield text

        for fields in _guarded(csv.reader(feed()), consumed):
            error = isinstance(fields, csv.Error)
            if len(consumed) == 1 and not error and not _opens_quote(consumed[0]):
                yield line, fields, None
                line += 1
                consumed.clear()
                continue
            first = next(csv.reader([consumed[0].split(",", 1)[0]]), [""])
            if len(consumed) > 1:
                text = (f"has an unterminated quote: a quoted field opened on this line runs "
                        f"{'past' if error else 'on to'} line {line + len(consumed) - 1} (NIH metadata has no "
                        "line breaks inside fields)")
            elif not error:
                text = "has an unterminated quote: a quoted field opened on this line is never closed (end of file)"
            else:
                text = f"cannot be parsed as CSV ({fields})"
            yield line, [], _LineProblem(text, len(consumed), first[0].strip() if first else "")
            source.pushed.extendleft(reversed(consumed[1:]))
            line += 1
            break  # a fresh reader for the lines put back: the old one is inside a quoted field
        else:
            return


def _opens_quote(text: str) -> bool:
    """True when a quoted field opened on this one line is not closed on it."""
    fields = next(csv.reader([text.rstrip("\r\n") + "\n"]), [])
    return bool(fields) and fields[-1].endswith("\n")


def _guarded(reader, consumed: list[str]) -> Iterator[list[str] | csv.Error]:
    """The reader's records; a csv error after reading some line(s) is yielded, not raised."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if not consumed:
                raise
            yield err
            return


def _named_frame(path: Path, header: list[str], rows: list[list[str]]) -> tuple[pd.DataFrame, list[str]]:
    """Map header positions to canonical names; fail naming every missing required column."""
    keep: dict[int, str] = {}
    ignored: list[str] = []
    for pos, name in enumerate(header):
        key = re.sub(r"[^0-9a-z]", "", name.lower())
        if not key or key.startswith("unnamed"):
            continue  # trailing empty column of the 2017 release
        canonical = _ALIASES.get(key)
        if canonical is None:
            ignored.append(name)
        elif canonical in keep.values():
            raise MetadataError(f"{path}: two columns map to '{canonical}' (second: '{name}')")
        else:
            keep[pos] = canonical
    missing = [nih for col, nih in REQUIRED.items() if col not in keep.values()]
    if missing:
        raise MetadataError(
            f"{path}: missing required column(s) {', '.join(repr(m) for m in missing)}; "
            f"found {', '.join(repr(h) for h in header)}"
        )
    by_position = list(zip(*rows)) if rows else [()] * len(header)
    frame = pd.DataFrame({name: _stripped(by_position[pos]) for pos, name in keep.items()}, dtype=object)
    return frame, ignored


_EDGE_WHITESPACE = (" \x00", "\t\x00", "\x00 ", "\x00\t")


def _stripped(values: tuple[str, ...]) -> list[str] | tuple[str, ...]:
    """Strip surrounding whitespace; a C-speed search skips the work for clean columns."""
    joined = "\x00" + "\x00".join(values) + "\x00"
    if not any(edge in joined for edge in _EDGE_WHITESPACE):
        return values
    return [v.strip() for v in values]


def _exclude(frame: pd.DataFrame, bad: pd.Series, reason: str, detail, log: ex.ExclusionLog) -> pd.DataFrame:
    """Move the ``bad`` rows to the log; ``detail(rows)`` builds their messages (only when needed)."""
    if bad.any():
        rows = frame[bad]
        log.add(rows, reason, "line " + rows["source_line"].astype(str) + ": " + detail(rows))
        return frame[~bad]
    return frame


def _map_unique(values: pd.Series, fn, dtype=object) -> pd.Series:
    """Apply ``fn`` once per distinct value (NIH columns have few) instead of once per row."""
    codes, uniques = pd.factorize(values)
    mapped = np.array([fn(u) for u in uniques], dtype=dtype)
    return pd.Series(mapped[codes], index=values.index)


def _validate(frame: pd.DataFrame, log: ex.ExclusionLog) -> pd.DataFrame:
    """Type every column; exclude each bad row under the first problem found, in a fixed order."""
    frame = _exclude(frame, frame["image_id"] == "", ex.MALFORMED_ROW, lambda r: "empty 'Image Index'", log)

    dup = frame["image_id"].duplicated(keep="first")
    if dup.any():
        first = frame[~dup].set_index("image_id")["source_line"]
        frame = _exclude(
            frame, dup, ex.DUPLICATE_IMAGE_ID,
            lambda r: "Image Index '" + r["image_id"] + "' already on line "
            + r["image_id"].map(first).astype(str), log,
        )

    patient = _numeric(frame["patient_id"])
    bad = patient.isna() | (patient < 0) | (patient != np.floor(patient))
    frame = _exclude(
        frame, bad, ex.INVALID_PATIENT_ID,
        lambda r: "Patient ID '" + r["patient_id"] + "' is not a non-negative integer", log,
    )
    frame = frame.assign(patient_id=patient[frame.index].astype(np.int64))

    age = _map_unique(frame["age_raw"], parse_age_years, dtype=float)
    frame = _exclude(
        frame, age.isna(), ex.UNPARSEABLE_AGE,
        lambda r: "Patient Age '" + r["age_raw"] + "' is neither a number of years nor an age "
        "with unit (058Y, 001M, 003D)", log,
    )
    frame = _exclude(
        frame, age[frame.index] > MAX_PLAUSIBLE_AGE, ex.IMPLAUSIBLE_AGE,
        lambda r: "Patient Age '" + r["age_raw"] + "' is " + age[r.index].round(1).astype(str)
        + f" years, above the plausible maximum of {MAX_PLAUSIBLE_AGE:g}", log,
    )
    frame = frame.assign(age_years=age[frame.index].round(4))

    for column, known, nih_name in (("sex", KNOWN_SEXES, "Patient Gender"), ("view", KNOWN_VIEWS, "View Position")):
        value = _map_unique(frame[column], lambda v, known=known: known.get(v.upper()))
        allowed = ", ".join(sorted(set(known.values())))
        frame = _exclude(
            frame, value.isna(), ex.UNKNOWN_SEX if column == "sex" else ex.UNKNOWN_VIEW,
            lambda r, c=column, n=nih_name, a=allowed: f"{n} '" + r[c] + f"' is not one of {a}", log,
        )
        frame = frame.assign(**{column: value[frame.index]})

    frame = _expand_findings(frame, log)
    return _finish(frame)


def _numeric(values: pd.Series) -> pd.Series:
    """``pd.to_numeric(errors="coerce")`` computed once per distinct string."""
    codes, uniques = pd.factorize(values)
    numbers = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(dtype=float)
    return pd.Series(numbers[codes], index=values.index)


def _expand_findings(frame: pd.DataFrame, log: ex.ExclusionLog) -> pd.DataFrame:
    """One 0/1 column per NIH finding; rows naming an unknown finding are excluded.

    Works on the unique label strings (836 in the full NIH table), not on 112,120 rows.
    """
    codes, uniques = pd.factorize(frame["finding_labels"])
    indicator = np.zeros((len(uniques), len(NIH_FINDINGS)), dtype=np.int8)
    problem: list[str | None] = [None] * len(uniques)
    reason: list[str | None] = [None] * len(uniques)
    position = {name: i for i, name in enumerate(NIH_FINDINGS)}
    for u, labels in enumerate(uniques):
        names = [p.strip() for p in str(labels).split("|") if p.strip()]
        unknown = [n for n in names if canonical_finding(n) is None]
        if not names or unknown:
            reason[u] = ex.UNKNOWN_FINDING
            problem[u] = (
                f"unknown finding(s) {', '.join(repr(n) for n in unknown)}" if unknown else "empty 'Finding Labels'"
            ) + f"; known: {', '.join(NIH_FINDINGS)}"
            continue
        canon = [canonical_finding(n) for n in names]
        if "No Finding" in canon and len(set(canon)) > 1:
            reason[u] = ex.CONTRADICTORY_FINDINGS
            problem[u] = f"'No Finding' listed together with findings: {labels!r}"
            continue
        for name in canon:
            indicator[u, position[name]] = 1
    row_reason = pd.Series(np.asarray(reason, dtype=object)[codes], index=frame.index)
    row_problem = pd.Series(np.asarray(problem, dtype=object)[codes], index=frame.index)
    for why in (ex.UNKNOWN_FINDING, ex.CONTRADICTORY_FINDINGS):
        bad = row_reason == why
        if bad.any():
            log.add(frame[bad], why, "line " + frame.loc[bad, "source_line"].astype(str) + ": " + row_problem[bad])
    good = row_reason.isna().to_numpy()
    flags = pd.DataFrame(indicator[codes[good]], columns=list(FINDING_COLUMNS), index=frame.index[good])
    return pd.concat([frame[good], flags], axis=1)


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Final types and column order; rows sorted by image id so row order never matters."""
    follow = frame["follow_up"] if "follow_up" in frame else frame["image_id"].str.extract(r"_(\d+)\.")[0]
    frame = frame.assign(
        dataset="nih",
        follow_up=_numeric(follow).astype("Int64"),
        path="",
    )
    for col in _NUMERIC_EXTRAS:
        if col in frame:
            frame[col] = _numeric(frame[col])
    extras = [c for c in FINDING_COLUMNS if c != TARGET] + [c for c in _NUMERIC_EXTRAS if c in frame]
    frame = frame[CORE_COLUMNS + extras + ["source_line"]]
    return frame.sort_values("image_id", kind="stable").reset_index(drop=True)


def _layout(header: list[str], ages: pd.Series) -> str:
    """A human label for the detected layout, recorded in the cohort summary."""
    if "OriginalImageWidth" in "".join(header):
        return "nih-sample"
    if not header[-1].strip() or ages.str.contains(r"[A-Za-z]", regex=True).any():
        return "nih-2017"
    return "nih-2020"
