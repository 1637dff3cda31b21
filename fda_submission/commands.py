"""Subcommands of ``cxr-device`` that live in ``fda_submission``: submission, trace."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .trace import grouped_tests, render_matrix, trace

SUBMISSION_EPILOG = """\
examples:
  cxr-device submission --run runs/nih --out runs/nih/submission
  cxr-device submission --run runs/nih --out docs_out --profile my_device.yaml --format md,html,pdf \\
      --junit build/junit.xml

The words a person must own (device name, manufacturer, intended use, indications, error impacts,
acceptance criteria) come from the device profile; start from fda_submission/profiles/device_profile.yaml.
Everything else comes from the run: cohort/, eda/, model/, evaluation/, bundle/.
"""


def submission_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submission", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SUBMISSION_EPILOG,
        help="render the algorithm description and validation plan from a run (Markdown, HTML, PDF)",
        description="Render the 510(k)-style algorithm description and the validation plan from a run directory.\n"
        "Every number, table and figure is the run's own; appendices give the provenance (file hashes),\n"
        "the SOUP list and, with --junit, the traceability matrix. A run on synthetic data gets a banner.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder (cohort/, eda/, model/, evaluation/, bundle/)")
    p.add_argument("--out", required=True, type=Path, help="output folder for the documents")
    p.add_argument("--profile", type=Path, help="device profile YAML (default: the template profile)")
    p.add_argument("--format", default="md,html", help="comma-separated: md, html, pdf (default md,html)")
    p.add_argument("--junit", type=Path, help="JUnit report of the test suite, for the traceability matrix")
    p.set_defaults(handler=_submission)


def _submission(args: argparse.Namespace) -> int:
    from .render import render_documents  # imports matplotlib and torch-free modules only on use

    rows = _trace_rows(args.junit) if args.junit else None
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    written = render_documents(args.run, args.out, args.profile, formats, rows)
    for fmt, paths in written.items():
        for path in paths:
            print(f"wrote {path}")
    return 0


def _trace_rows(junit: Path) -> list[dict]:
    return [{"id": r.id, "text": r.text, "status": r.status, "grouped": grouped_tests(r)} for r in trace(junit)]


def trace_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="traceability matrix: requirements -> tests -> latest results (from a JUnit report)",
        description="Link every requirement of fda_submission/requirements.yaml to the tests marked with\n"
        "@pytest.mark.requirement(ID) and to their results in a JUnit report (`make test` writes\n"
        "build/junit.xml). Exit code 1 when a requirement has no test or a failing test.",
    )
    p.add_argument("--junit", required=True, type=Path, help="JUnit XML report of the test suite")
    p.add_argument("--requirements", type=Path, help="requirements YAML (default: the package's)")
    p.add_argument("--out", type=Path, help="write the Markdown matrix here instead of standard output")
    p.set_defaults(handler=_trace)


def _trace(args: argparse.Namespace) -> int:
    rows = trace(args.junit, args.requirements)
    text = render_matrix(rows)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    statuses = [r.status for r in rows]
    print(f"{len(rows)} requirements: " + ", ".join(f"{s} {statuses.count(s)}" for s in sorted(set(statuses))),
          file=sys.stderr)
    return 0 if all(s == "verified" for s in statuses) else 1
