"""``cxr-device submission --verify PACKAGE --run RUN``: re-check a rendered package against its run.

What a reviewer would check by hand, done for every number:

1. **The evidence** (``evidence/index.json``): every file the package carries is there, unaltered
   (its sha256), and - for the run's files - still the run's file.
2. **What was derived** (``evidence/derived.json``: the statistical plan, the population's bands,
   the SOUP list, the risk rows, ...) is derived again from the run, the package's profile and
   its JUnit report, and must come out the same.
3. **Every traced number** (``trace.json``) is read again from its source - a run file and JSON
   path, a CSV row and column, a profile key, a derived value, or arithmetic on those - formatted
   as it was printed, and compared with what the package printed.
4. **Every document** (``.md`` and ``.html``) is read back: each number in it must be the number
   the rendering printed at that place; a number edited, added or removed is named, with the
   document, its section, what it says now and what the source gives. Each figure's caption must
   be the one the run's values give that figure (a caption moved to another figure is named).

:func:`verify_package` returns the findings (none: the package is the run's); the command
prints each and exits 1 when there is one.
"""
from __future__ import annotations

import difflib
import html as html_lib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cxr_device.errors import CxrDeviceError
from cxr_device.hashing import sha256_file

from .evidence import DERIVED, EVIDENCE, INDEX, JUNIT_COPY, PROFILE_COPY, derived_record
from .numbers import numeric_tokens
from .tracing import PROFILE, evaluate, ref_from_dict

TRACE_JSON = "trace.json"


@dataclass(frozen=True)
class VerifyFinding:
    """One thing in the package that is not what its run says."""

    kind: str  # evidence-missing | evidence-altered | not-the-run | derived | number | edited | untraced | caption
    # | structure
    where: str  # document and section, or file
    message: str
    printed: str = ""
    expected: str = ""
    source: str = ""

    def line(self) -> str:
        sides = f" - printed {self.printed!r}" if self.printed else ""
        sides += f", source gives {self.expected!r}" if self.expected else ""
        sides += f" ({self.source})" if self.source else ""
        return f"[{self.kind}] {self.where}: {self.message}{sides}"

    def as_dict(self) -> dict:
        return dict(vars(self))


def verify_package(package: str | Path, run: str | Path, profile: str | Path | None = None) -> list[VerifyFinding]:
    """Every finding of the four checks of the module notes (an empty list: the package verifies)."""
    package, run = Path(package), Path(run)
    trace_path = package / TRACE_JSON
    if not trace_path.is_file():
        raise CxrDeviceError(f"{package}: no {TRACE_JSON}: not a package rendered by cxr-device submission "
                             "(render it again with `cxr-device submission --run RUN --out DIR`)")
    trace = json.loads(trace_path.read_text())
    findings = _check_evidence(package, run)
    profile_path = Path(profile) if profile else package / EVIDENCE / PROFILE_COPY
    derived, derived_findings, context = _check_derived(package, run, profile_path)
    findings += derived_findings
    captions = expected_captions(context)
    loaded_profile = _profile_data(profile_path)

    @cache
    def load(name: str) -> Any:
        if name == PROFILE:
            return loaded_profile
        if name == DERIVED:
            return derived
        return _load_run_file(run, name)

    for name, document in trace["documents"].items():
        expected = {}
        for number in document["numbers"]:
            where = f"{name}, {number['section'] or 'top'} ({number['id']})"
            source = ref_from_dict(number["source"])
            try:
                value = evaluate(source, load)
                text = format(value, number["spec"])
            except Exception as err:  # noqa: BLE001 - a source that cannot be read is itself a finding
                findings.append(VerifyFinding("number", where, f"its source cannot be read ({type(err).__name__}: "
                                              f"{err})", number["text"], "", _describe(number["source"])))
                continue
            expected[number["id"]] = text
            if text != number["text"]:
                findings.append(VerifyFinding("number", where, "the package printed another number than its source "
                                              "gives", number["text"], text, _describe(number["source"])))
        by_id = {n["id"]: n for n in document["numbers"]}
        md = package / document["file"]
        if not md.is_file():
            findings.append(VerifyFinding("structure", document["file"], "the document is missing"))
            continue
        text = md.read_text()
        findings += _check_tokens(name, document["file"], text, document["tokens"], by_id, expected)
        findings += _check_captions(name, text, captions)
        page = md.with_suffix(".html")
        if page.is_file():
            findings += _check_html(name, page, by_id, expected)
    return findings


def _describe(source: dict) -> str:
    if "op" in source:
        return f"{source['op']}(" + ", ".join(_describe(a) if isinstance(a, dict) else repr(a)
                                              for a in source["args"]) + ")"
    return f"{source['file']}: {source['path']}" if source.get("path") else source["file"]


# --- 1. evidence ------------------------------------------------------------------------------
def _check_evidence(package: Path, run: Path) -> list[VerifyFinding]:
    index_path = package / EVIDENCE / INDEX
    if not index_path.is_file():
        return [VerifyFinding("evidence-missing", f"{EVIDENCE}/{INDEX}", "the package does not carry its evidence")]
    out = []
    for name, item in json.loads(index_path.read_text()).items():
        path = package / name
        if not path.is_file():
            out.append(VerifyFinding("evidence-missing", name, "a file the documents cite is missing from the package"))
            continue
        actual = sha256_file(path)
        if actual != item["sha256"]:
            out.append(VerifyFinding("evidence-altered", name, "altered since the package was rendered",
                                     actual[:16], item["sha256"][:16], "evidence/index.json sha256"))
        run_file = item.get("run_file")
        if run_file:
            origin = Path(run_file) if Path(run_file).is_absolute() else run / run_file
            if not origin.is_file():
                out.append(VerifyFinding("not-the-run", name, f"the run has no {run_file}"))
            elif sha256_file(origin) != item.get("run_sha256", item["sha256"]):
                out.append(VerifyFinding("not-the-run", name, f"the run's {run_file} is not the file the package "
                                         "was rendered from", item.get("run_sha256", item["sha256"])[:16],
                                         sha256_file(origin)[:16]))
    return out


# --- 2. derived values -------------------------------------------------------------------------
def _check_derived(package: Path, run: Path, profile: Path) -> tuple[dict, list[VerifyFinding], dict]:
    """derived.json derived again from the run (what the numbers are checked against), the
    differences from the package's copy, and the context built again from the run."""
    from .context import build_context
    from .profile import load_profile
    from .trace import matrix_rows

    junit = package / EVIDENCE / JUNIT_COPY
    context = build_context(run, load_profile(profile), matrix_rows(junit) if junit.is_file() else None,
                            junit if junit.is_file() else None)
    fresh = derived_record(context)
    stored_path = package / EVIDENCE / DERIVED
    if not stored_path.is_file():
        return fresh, [VerifyFinding("evidence-missing", f"{EVIDENCE}/{DERIVED}", "the package's derived values are "
                                     "missing")], context
    stored = json.loads(stored_path.read_text())
    out = [VerifyFinding("derived", f"{EVIDENCE}/{DERIVED}: {key}", "derived again from the run, this value differs")
           for key in sorted(set(fresh) | set(stored)) if fresh.get(key) != stored.get(key)]
    return fresh, out, context


#: A figure as the Markdown prints it: the image (its alt text is its number), then its caption.
FIGURE = re.compile(r"^!\[(?P<label>[^\]]*)\]\(figures/(?P<key>[\w.-]+)\.png\)\n\n\*(?P=label): (?P<caption>.*)\*$",
                    re.MULTILINE)


def expected_captions(context: dict) -> dict[str, str]:
    """The caption of every figure whose caption is made from the run's values, by figure key:
    the evaluation figures, the exploratory ones and each assessment's."""
    from . import wording

    out = dict(wording.captions(context))
    out.update(wording.eda_figures(context))
    for assessment in context["assessment_files"]:
        view = wording.assessment_view(assessment)
        out.update({f"assess_{assessment['folder']}_{kind}": text for kind, text in view["figure_captions"].items()})
    return out


def _check_captions(name: str, text: str, expected: dict[str, str]) -> list[VerifyFinding]:
    """Each figure's caption against the caption the run's values give that figure."""
    return [VerifyFinding("caption", f"{name}, {m.group('label')}", f"the caption is not the one {m.group('key')}.png's "
                          "values give", m.group("caption"), expected[m.group("key")])
            for m in FIGURE.finditer(text) if m.group("key") in expected
            and m.group("caption") != expected[m.group("key")]]


def _profile_data(path: Path) -> dict:
    from .profile import load_profile

    return json.loads(json.dumps(load_profile(path), default=str))


def _load_run_file(run: Path, name: str) -> Any:
    path = Path(name) if Path(name).is_absolute() else run / name
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(path.read_text())
    if path.suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path).to_dict("records")
    raise CxrDeviceError(f"{path}: not a file a number can be read from")


# --- 3 and 4. the documents ------------------------------------------------------------------------
def _check_tokens(name: str, file: str, text: str, recorded: list[dict], by_id: dict,
                  expected: dict) -> list[VerifyFinding]:
    """The numbers of a document now against the numbers the rendering printed, in order."""
    now = [t.text for t in numeric_tokens(text)]
    then = [t["text"] for t in recorded]
    out = []
    sections = _sections(text)
    positions = {i: t for i, t in enumerate(numeric_tokens(text))}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=then, b=now, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        olds, news = recorded[i1:i2], list(range(j1, j2))
        for k in range(max(len(olds), len(news))):
            old = olds[k] if k < len(olds) else None
            new = positions[news[k]] if k < len(news) else None
            section = sections(new.line) if new else ""
            where = f"{file}, {section or 'top'}"
            if old and new:
                trace = by_id.get(old["trace"]) if old["trace"] else None
                source = _describe(trace["source"]) if trace else "no source: printed without one"
                out.append(VerifyFinding("edited", where + (f" ({old['trace']})" if old["trace"] else ""),
                                         "a number was changed", new.text,
                                         expected.get(old["trace"], old["text"]), source))
            elif new:
                out.append(VerifyFinding("untraced", where, "a number with no source (not printed by the rendering)",
                                         new.text))
            else:
                out.append(VerifyFinding("edited", f"{file} ({old['trace'] or 'untraced'})", "a number the rendering "
                                         "printed is gone", "", old["text"]))
    for token in recorded:
        if token["trace"] is None and not token.get("profile_text"):
            out.append(VerifyFinding("untraced", file, "the rendering printed a number without a source",
                                     token["text"]))
    return out


def _sections(text: str):
    headings = [(n, line[3:].strip()) for n, line in enumerate(text.splitlines(), 1) if line.startswith("## ")]

    def at(line: int) -> str:
        return next((title for n, title in reversed(headings) if n <= line), "")

    return at


_SPAN = re.compile(r'<span class="tn" data-trace="([^"]+)">(.*?)</span>', re.DOTALL)


def _check_html(name: str, page: Path, by_id: dict, expected: dict) -> list[VerifyFinding]:
    """Each traced number of the HTML document against the rendering and its source."""
    out = []
    seen = set()
    for match in _SPAN.finditer(page.read_text()):
        trace_id, shown = match.group(1), html_lib.unescape(re.sub(r"<[^>]+>", "", match.group(2)))
        seen.add(trace_id)
        number = by_id.get(trace_id)
        if number is None:
            out.append(VerifyFinding("untraced", f"{page.name} ({trace_id})", "a number marked traced that the "
                                     "rendering did not print", shown))
        elif shown != number["text"]:
            out.append(VerifyFinding("edited", f"{page.name}, {number['section'] or 'top'} ({trace_id})",
                                     "a number was changed", shown, expected.get(trace_id, number["text"]),
                                     _describe(number["source"])))
    missing = sorted(set(by_id) - seen, key=lambda i: int(i.rsplit("-", 1)[1]))
    if missing:
        out.append(VerifyFinding("edited", page.name, f"{len(missing)} traced number(s) are gone, the first "
                                 f"{missing[0]}", "", by_id[missing[0]]["text"]))
    return out
