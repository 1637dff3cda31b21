"""The package index's map of FDA's elements points at sections that exist; and every data file the
product reads is declared as package data, so an installed (not editable) package has it."""
from __future__ import annotations

import fnmatch
import shutil
import tomllib
from pathlib import Path

import pytest

from fda_submission.context import guidance_map
from fda_submission.document_control import DOCUMENTS
from fda_submission.render import render_documents

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.requirement("REQ-DOC-009")
def test_every_element_of_the_map_is_a_section_of_its_document(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    written = render_documents(run, tmp_path / "docs", formats=("md",))
    texts = {p.stem: p.read_text() for p in written["md"]}
    elements = [e for g in guidance_map() for e in g["elements"]]
    assert len(elements) >= 20
    for e in elements:
        assert e["document"] in DOCUMENTS, e
        if e["section"]:
            headings = [line[3:] for line in texts[e["document"]].splitlines() if line.startswith("## ")]
            assert any(h.startswith(e["section"]) for h in headings), (e["element"], e["document"], e["section"])
    assert "Where each element FDA asks for is" in texts["package_index"]


def test_every_data_file_of_the_packages_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = config["tool"]["setuptools"]["package-data"]
    for package in ("cxr_device", "validation", "fda_submission"):
        for path in (ROOT / package).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts \
                    or "examples" in path.relative_to(ROOT / package).parts:
                continue
            rel = path.relative_to(ROOT)
            owner = ".".join(rel.parts[:-1])
            candidates = [(pkg, pattern) for pkg, patterns in declared.items() for pattern in patterns
                          if owner == pkg or owner.startswith(pkg + ".")]
            inside = ["/".join(rel.parts[len(pkg.split(".")):]) for pkg, _ in candidates]
            assert any(fnmatch.fnmatch(name, pattern) for name, (_, pattern) in zip(inside, candidates)), rel
