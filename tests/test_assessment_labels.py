"""The labels CSV of `assess --dicom`: contradictory labels are refused, exact duplicates counted,
and every row is accounted for exactly once (issue 22, item 2)."""
from __future__ import annotations

import csv
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_device.cli import main
from cxr_device.synth_dicom import write_synthetic_dicom
from validation.assessment import ASSESSMENT
from validation.assessment_inputs import (
    CONFLICTING_LABEL,
    DUPLICATE_LABEL,
    FILE_WITHOUT_LABEL,
    INVALID_LABEL,
    LABEL_WITHOUT_FILE,
    from_dicom_labels,
)


def _chest(path: Path, seed: int, **header) -> Path:
    pixels = (np.random.default_rng(seed).random((512, 512)) * 4095).astype(np.uint16)
    return write_synthetic_dicom(path, pixels, seed=seed, bits_stored=12, **header)


def _labels(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return path


@pytest.mark.requirement("REQ-DATA-001", "REQ-ASSESS-001")
def test_a_file_labelled_0_and_1_is_refused_naming_both_rows_and_the_cli_exits_1(trained_run, tmp_path, capsys):
    folder = tmp_path / "set"
    for i in range(6):
        _chest(folder / f"chest{i}.dcm", i)
    rows = [(f"chest{i}.dcm", str(i % 2)) for i in range(6)] + [("chest0.dcm", "1"), ("chest1.dcm", "1")]
    labels = _labels(tmp_path / "labels.csv", rows)
    inputs = from_dicom_labels(folder, labels)
    assert sorted(item.key for item in inputs.items) == [f"chest{i}.dcm" for i in range(1, 6)]  # chest0 not scored
    conflicts = [e for e in inputs.excluded if e["reason"] == CONFLICTING_LABEL]
    assert [e["key"] for e in conflicts] == ["chest0.dcm", "chest0.dcm"]
    assert all("line 2: 0" in e["detail"] and "line 8: 1" in e["detail"] for e in conflicts)
    duplicates = [e for e in inputs.excluded if e["reason"] == DUPLICATE_LABEL]
    assert [e["key"] for e in duplicates] == ["chest1.dcm"] and duplicates[0]["detail"].endswith("line 3")
    assert {item.key: item.label for item in inputs.items}["chest1.dcm"] == 1

    out = tmp_path / "out"
    code = main(["assess", "--bundle", str(trained_run / "bundle"), "--name", "conflict", "--dicom", str(folder),
                 "--labels", str(labels), "--out", str(out), "--bootstrap", "100"])
    printed = capsys.readouterr()
    assert code == 1 and "2 conflicting_label, 1 duplicate_label" in printed.out
    document = json.loads((out / ASSESSMENT).read_text())
    assert document["inputs"]["excluded_by_reason"] == {CONFLICTING_LABEL: 2, DUPLICATE_LABEL: 1}
    assert document["inputs"]["n_labelled"] == 5


# --- the property: any mix of rows is counted exactly ---------------------------------------
FILES = ("a.dcm", "b.dcm", "c.dcm")


@pytest.fixture(scope="module")
def three_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labels") / "set"
    for seed, name in enumerate(FILES):
        _chest(folder / name, seed)
    return folder


def _expected(rows: list[tuple[str, str]], folder: Path) -> tuple[Counter, dict[str, int]]:
    """What every row should become, worked out independently of the reader."""
    groups: dict[Path, list[str]] = {}
    counts: Counter = Counter()
    for path, label in rows:
        if label.strip() not in ("0", "1"):
            counts[INVALID_LABEL] += 1
            continue
        groups.setdefault((folder / path).resolve(), []).append(label.strip())
    scored = {}
    for resolved, labels in groups.items():
        if len(set(labels)) > 1:
            counts[CONFLICTING_LABEL] += len(labels)
            continue
        counts[DUPLICATE_LABEL] += len(labels) - 1
        if resolved.is_file():
            scored[resolved.name] = int(labels[0])
        else:
            counts[LABEL_WITHOUT_FILE] += 1
    counts[FILE_WITHOUT_LABEL] += sum(1 for name in FILES if (folder / name).resolve() not in groups)
    return +counts, scored


_path = st.sampled_from(["a.dcm", "b.dcm", "c.dcm", "./a.dcm", "sub/../b.dcm", "missing.dcm"])
_label = st.sampled_from(["0", "1", " 1", "0 ", "2", "yes", ""])


@pytest.mark.requirement("REQ-DATA-001")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(_path, _label), min_size=1, max_size=12))
def test_any_mix_of_duplicate_and_conflicting_rows_is_counted_exactly(three_files, rows):
    with tempfile.TemporaryDirectory() as tmp:
        labels = _labels(Path(tmp) / "labels.csv", rows)
        inputs = from_dicom_labels(three_files, labels)
    counts, scored = _expected(rows, three_files)
    assert Counter(e["reason"] for e in inputs.excluded) == counts
    assert {item.path.name: item.label for item in inputs.items} == scored
    row_reasons = (INVALID_LABEL, DUPLICATE_LABEL, CONFLICTING_LABEL, LABEL_WITHOUT_FILE)
    assert len(rows) == len(inputs.items) + sum(counts[r] for r in row_reasons)  # every row once
