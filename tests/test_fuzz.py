"""Fuzzing the three doors hostile input comes through: the metadata reader, the rules engine and
the bundle loader. The property is the same for all three: either a result, or a
``CxrDeviceError`` whose message names the input - never another exception, never a hang
(inputs are bounded)."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_device.errors import CxrDeviceError
from cxr_device.nih_metadata import read_nih_metadata
from cxr_device.run_layout import DEVICE_JSON, WEIGHTS
from cxr_device.runtime.bundle import Bundle, canonical_hash, load_bundle
from cxr_device.runtime.input_rules import RuleSet, load_rules

from .conftest import NIH_HEADER_2020

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- metadata CSV ---------------------------------------------------------------------------
_cell = st.one_of(
    st.sampled_from(["00000001_000.png", "Pneumonia", "No Finding", "Pneumonia|Effusion", "1", "058Y", "M", "F",
                     "PA", "AP", "LL", "", " ", '"', '""', "=HYPERLINK(\"http://x\",\"y\")", "\x1b[2J", "\x00",
                     "2500", "0.143", "-1", "nan", "inf", "1e309", "\r", "\n", ","]),
    st.text(max_size=12),
)
_row = st.lists(_cell, min_size=0, max_size=12).map(lambda cells: ",".join(cells))
_header = st.one_of(st.just(NIH_HEADER_2020), st.lists(_cell, max_size=12).map(",".join))


@pytest.mark.requirement("REQ-INPUT-001")
@FUZZ
@given(header=_header, rows=st.lists(_row, max_size=15), gzip_name=st.booleans())
def test_metadata_reader_gives_a_table_or_an_error_naming_the_file(header, rows, gzip_name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meta.csv"
        path.write_bytes("\n".join([header, *rows]).encode("utf-8", "replace"))
        if gzip_name:  # a plain file named .gz must be an error naming it, not a crash
            path = path.rename(path.with_suffix(".csv.gz"))
        try:
            table = read_nih_metadata(path)
        except CxrDeviceError as err:
            assert str(path) in str(err)
            return
        counted = len(table.frame) + sum(table.exclusions.counts().values())
        assert counted >= table.source["rows_read"] - rows.count("")  # nothing vanishes uncounted


# --- rules YAML -----------------------------------------------------------------------------
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=10), st.sampled_from(["Modality", "Rows", "PatientAge", "DX", "error",
                                                           "warning", "Modalty", "1.2.840.10008.5.1.4.1.1.1"]))
_value = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
_rule_keys = st.sampled_from(["id", "attributes", "allowed", "forbidden", "range", "age_range", "synonyms",
                              "severity", "optional", "message", "colour"])
_rule = st.dictionaries(_rule_keys, _value, max_size=7)
_rules_document = st.one_of(_value, st.fixed_dictionaries({"name": _scalar, "version": _value,
                                                            "rules": st.lists(_rule, max_size=4)}))


@pytest.mark.requirement("REQ-INPUT-001")
@FUZZ
@given(document=_rules_document)
def test_rules_loader_gives_rules_or_an_error_naming_the_file(document):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        try:
            rules = load_rules(path)
        except CxrDeviceError as err:
            assert str(path) in str(err)
            return
        assert isinstance(rules, RuleSet) and rules.rules


# --- bundle ---------------------------------------------------------------------------------
_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                               st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3)),
                     max_leaves=8)
_paths = st.sampled_from([("threshold", "value"), ("threshold", "rule"), ("threshold",), ("files",),
                          ("files", "model.safetensors"), ("files", "../../etc/passwd"), ("architecture", "spec"),
                          ("architecture", "spec", "arch"), ("architecture", "spec", "head_hidden"),
                          ("architecture", "spec", "unknown"), ("preprocessing", "image_size"),
                          ("preprocessing", "std"), ("preprocessing",), ("format",), ("input_rules",)])


@pytest.fixture(scope="module")
def pristine_bundle(trained_run, tmp_path_factory):
    return shutil.copytree(trained_run / "bundle", tmp_path_factory.mktemp("fuzz") / "bundle")


def _set(document: dict, path: tuple[str, ...], value) -> None:
    target = document
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


@pytest.mark.requirement("REQ-INPUT-001", "REQ-BUNDLE-001")
@FUZZ
@given(edits=st.lists(st.tuples(_paths, _json), min_size=1, max_size=3), rehash=st.booleans(),
       weights=st.one_of(st.none(), st.binary(max_size=64)))
def test_bundle_loader_gives_a_device_or_an_error_naming_the_bundle(pristine_bundle, edits, rehash, weights):
    """The forger's moves: edit fields of device.json, replace the weights, and (as a forger
    would) recompute every hash. Without a pinned key some edits may load - but only as a
    device whose every field is valid; nothing ever crashes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(pristine_bundle, Path(tmp) / "bundle"))
        document = json.loads((folder / DEVICE_JSON).read_text())
        for path, value in edits:
            _set(document, path, value)
        if weights is not None:
            (folder / WEIGHTS).write_bytes(weights)
            if isinstance(document.get("files"), dict):
                document["files"][WEIGHTS] = hashlib.sha256(weights).hexdigest()
        if rehash:
            document["content_sha256"] = canonical_hash(document)
        (folder / DEVICE_JSON).write_text(json.dumps(document))
        try:
            bundle = load_bundle(folder)
        except CxrDeviceError as err:
            assert str(folder) in str(err)
            return
        assert isinstance(bundle, Bundle) and 0.0 <= bundle.threshold <= 1.0
