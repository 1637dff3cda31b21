"""Profile text never carries a control character to a terminal or a document (issue 22, item 6):
escape codes become visible escapes at load, line breaks and tabs survive only in prose."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_device.cli import main
from fda_submission.profile import MULTILINE, load_profile
from fda_submission.render import render_documents

#: C0 and C1 controls and DEL, except tab and newline.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: ... and tab and newline too (what a one-line value may not hold).
CONTROL_ANY = re.compile("[\x00-\x1f\x7f-\x9f]")
HOSTILE = {
    "device_name": "Lung\x1b[2J\x1b]0;pwned\x07 Detector",
    "manufacturer": "ACME\x00 Imaging\r\nEvil Corp",
    "intended_use": "Flags studies.\nSecond line\twith a tab\x1b[31m red\x1b[0m\x07\x00.",
    "user": "radiologists\x9b2J",
    "document_control": {"author": "J.\x08\x08Doe", "approvers": [{"name": "A\x1b[8m", "role": "QA\x7f"}]},
    "pccp": {"planned_changes": ["retrain\x1bc", "re-threshold"]},
}


@pytest.fixture
def run(trained_run, tmp_path):
    copy = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    summary_path = copy / "model" / "train_summary.json"
    summary = json.loads(summary_path.read_text())
    summary["cohort"]["dir"] = str(copy / "cohort")
    summary_path.write_text(json.dumps(summary))
    return copy


def _profile(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, allow_unicode=True))
    return path


def _strings(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


@pytest.mark.requirement("REQ-INPUT-002")
def test_escape_codes_in_the_profile_reach_neither_the_terminal_nor_the_documents(run, tmp_path, capsys):
    profile = _profile(tmp_path / "profile.yaml", HOSTILE)
    main(["submission", "--run", str(run), "--check", "--profile", str(profile)])
    printed = capsys.readouterr()
    assert not CONTROL.search(printed.out + printed.err)
    assert "Lung\\x1b[2J\\x1b]0;pwned\\x07 Detector" in printed.out  # shown, escaped, where it was
    written = render_documents(run, tmp_path / "docs", profile, formats=("md", "html"))
    for path in written["md"] + written["html"]:
        assert not CONTROL.search(path.read_text()), path.name
    labeling = (tmp_path / "docs" / "labeling.md").read_text()
    assert "Second line\twith a tab\\x1b[31m red" in labeling  # prose keeps its line break and tab
    assert "ACME\\x00 Imaging Evil Corp" in (tmp_path / "docs" / "device_description.md").read_text()


# --- the property ---------------------------------------------------------------------------
_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30) | st.sampled_from(
    ["\x1b[2J", "\x1b]0;title\x07", "\x00", "\x9b31m", "a\r\nb", "\t", "\u2028", "\x85", "\u202e evil"])


def _hostile_profile(texts: list[str]) -> dict:
    name, prose, person, item, population = texts
    return {"device_name": name, "intended_use": prose, "user": person, "manufacturer": person,
            "pccp": {"planned_changes": [item]}, "population": {"name": population},
            "owner_text": {"installation": prose}, "document_control": {"author": person}}


@pytest.mark.requirement("REQ-INPUT-002")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_text, min_size=5, max_size=5))
def test_every_profile_string_is_free_of_control_characters_after_load(texts):
    with tempfile.TemporaryDirectory() as tmp:
        profile = load_profile(_profile(Path(tmp) / "p.yaml", _hostile_profile(texts)))
    for key, value in _strings(profile):
        assert not (CONTROL if key in MULTILINE else CONTROL_ANY).search(value), (key, value)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_text, min_size=5, max_size=5))
def test_no_profile_text_puts_a_control_byte_in_check_output_or_documents(run, texts, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        profile = _profile(Path(tmp) / "p.yaml", _hostile_profile(texts))
        main(["submission", "--run", str(run), "--check", "--profile", str(profile)])
        printed = capsys.readouterr()
        assert not CONTROL.search(printed.out + printed.err)
        written = render_documents(run, Path(tmp) / "docs", profile, formats=("md", "html"))
        for path in written["md"] + written["html"]:
            assert not CONTROL.search(path.read_text(encoding="utf-8")), path.name
