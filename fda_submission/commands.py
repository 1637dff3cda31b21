"""Subcommands of ``cxr-device`` that live in ``fda_submission``: submission, trace, demo."""
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


# --- demo ----------------------------------------------------------------------------------
DEMO_STEPS = ("synth", "cohort", "eda", "train", "evaluate", "bundle", "submission")


def demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run the whole pipeline on built-in synthetic data, documents included",
        description="The first thing to run on a fresh install. Generates a synthetic NIH-format dataset\n"
        "(phantoms, not patients) and runs the whole pipeline on it on the CPU: synth -> cohort -> eda ->\n"
        "train (small CNN, 64 px) -> evaluate -> locked bundle -> submission documents (Markdown and\n"
        "HTML, marked synthetic), and writes a few synthetic DICOMs to try check-dicom and predict on.\n"
        "A re-run replaces the previous demo's outputs.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    p.add_argument("--n-patients", type=int, default=120, help="synthetic patients (default 120)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cxr_device.demo import run_demo
    from validation.evaluation import evaluate_run

    from .render import render_documents

    progress = not args.quiet and sys.stderr.isatty()
    result = run_demo(args.out, args.n_patients, args.seed, progress=progress)
    metrics = evaluate_run(args.out, n_bootstrap=500, seed=args.seed, progress=progress)
    documents = render_documents(args.out, args.out / "submission", formats=("md", "html"))
    s = result.cohort.summary
    test = metrics["splits"]["test"]
    ci = lambda m: f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"  # noqa: E731
    print(f"cxr-device demo on SYNTHETIC data (phantoms, not patients) in {args.out}")
    print(f"  ran: {' -> '.join(DEMO_STEPS)}")
    print(f"  data       {result.metadata}")
    print(f"  cohort     {result.cohort_dir / 'cohort.csv'}: {s['n_images']} images, {s['n_patients']} patients, "
          f"{s['n_positive']} pneumonia; " + ", ".join(f"{k} {v['n_images']}" for k, v in s["splits"].items()))
    print(f"  eda        {result.eda_dir} ({len(result.eda['figures'])} figures)")
    print(f"  model      {result.training.model_dir} (small CNN, {len(result.training.history)} epochs on the CPU)")
    print(f"  evaluation {args.out / 'evaluation'}: threshold {metrics['threshold']['value']:.3f} (max F1 on "
          f"validation); test AUROC {ci(test['auroc'])}, sensitivity {ci(test['sensitivity'])}, "
          f"specificity {ci(test['specificity'])} (phantoms: easy on purpose)")
    print(f"  bundle     {args.out / 'bundle'} (locked: every file hashed)")
    print(f"  documents  {', '.join(str(p) for p in documents['html'])} (and .md)")
    print("try:")
    print(f"  cxr-device check-dicom {args.out / 'dicom'}")
    print(f"  cxr-device predict --bundle {args.out / 'bundle'} "
          + " ".join(str(p) for p in result.dicoms.values()) + f" --heatmap {args.out / 'heatmaps'}")
    return 0
