"""Subcommands of ``cxr-device`` that live in ``fda_submission``: submission, trace, run, demo."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path

from cxr_device.console import check_output_dir

from . import STEPS
from .trace import matrix_rows, render_matrix, trace

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
    from .render import (
        render_documents,  # imports matplotlib and torch-free modules only on use
    )

    rows = matrix_rows(args.junit) if args.junit else None
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    written = render_documents(args.run, args.out, args.profile, formats, rows)
    for paths in written.values():
        for path in paths:
            print(f"wrote {path}")
    return 0


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


# --- run -----------------------------------------------------------------------------------
RUN_EPILOG = """\
examples:
  cxr-device run configs/demo.yaml --out runs/demo
  cxr-device run configs/nih_densenet121.yaml                 (runs/nih_densenet121)
  cxr-device run configs/nih_densenet121.yaml --from evaluate (re-run evaluate and submission)

A step whose settings and input files are unchanged and whose outputs are intact is skipped and
says so; an interrupted training continues from model/last.pt. RUN/manifest.json records the
sha256 of every input and output, versions, seeds, GPU and wall time per step.

The run folder: a folder that holds files but is not a run of this configuration (no
manifest.json, or one of another run) is refused unless --force. A step that runs again removes
only the files its previous run recorded in manifest.json; files you put in the folder are kept.

exit code: 0 ok; 1 the run finished but a step left rows or images out (counted, and listed in the
file each line names: cohort/exclusions.csv, eda/eda.json, model/train_summary.json or
evaluation/metrics.json); 2 usage error or unusable input (the run stops at that step)
"""


def run_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EPILOG,
        help="one config, every step: cohort -> eda -> train -> evaluate -> submission, resumable",
        description="Run the whole pipeline from one YAML configuration into one run directory.\n"
        "Sections: data (cohort; or data.synthetic to generate phantoms), eda, train, evaluate, submission;\n"
        "see configs/ for commented examples. The configuration is validated before anything runs.",
    )
    p.add_argument("config", type=Path, help="run configuration YAML")
    p.add_argument("--out", type=Path, help="run folder (default runs/<name>)")
    p.add_argument("--force", action="store_true",
                   help="re-run every step, also into an --out folder that is not a run of this configuration "
                   "(files of the same names as the run's are replaced; no other file is deleted)")
    p.add_argument("--from", dest="from_step", metavar="STEP", choices=STEPS,
                   help=f"re-run this step and the ones after it ({', '.join(STEPS)})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .run_config import load_run_config

    config = load_run_config(args.config)
    out = check_output_dir(args.out or Path("runs") / config.name)
    manifest = Pipeline(config, out, progress=not args.quiet and sys.stderr.isatty()).run(args.force, args.from_step)
    print(f"run {config.name} in {out}: " + ", ".join(f"{k} {v['status'].split(' ')[0]}"
                                                   for k, v in manifest["steps"].items()))
    print(f"  manifest   {out / 'manifest.json'}")
    print(f"  documents  {out / 'submission'}")
    return _report_left_out("run", manifest, out)


def _report_left_out(command: str, manifest: dict, out: Path) -> int:
    """Say on stderr what the run left out and where it is listed; the exit code (1 if anything)."""
    from cxr_device.safe_text import terminal

    from .pipeline import left_out_lines

    lines = left_out_lines(manifest, out)
    if not lines:
        return 0
    print(f"cxr-device {command}: the run finished, but some input was left out:", file=sys.stderr)
    for line in lines:
        print(f"  {terminal(line)}", file=sys.stderr)
    return 1


# --- demo ----------------------------------------------------------------------------------
def demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run the whole pipeline on built-in synthetic data, documents included",
        description="The first thing to run on a fresh install: `cxr-device run` with the built-in\n"
        "configs/demo.yaml. Synthetic NIH-format phantoms (not patients) go through every step on the CPU:\n"
        "synth -> cohort -> eda -> train (small CNN, 64 px) -> evaluate -> locked bundle -> submission\n"
        "documents (marked synthetic); a few standard-valid synthetic DICOMs are written to try check-dicom,\n"
        "predict and the DICOM node (serve).",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"),
                   help="run folder (default runs/demo); a folder that holds files but is not a demo run is "
                   "refused unless --force")
    p.add_argument("--force", action="store_true",
                   help="re-run every step, also into an --out folder that is not a demo run "
                   "(files of the same names as the run's are replaced; no other file is deleted)")
    p.add_argument("--n-patients", type=int, help="synthetic patients (default: the demo config's 120)")
    p.add_argument("--seed", type=int, help="seed of the synthetic data (default: the demo config's 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)


def demo_config_path() -> Path:
    return Path(str(resources.files("fda_submission") / "configs" / "demo.yaml"))


def _demo(args: argparse.Namespace) -> int:
    from cxr_device.demo import write_demo_dicoms
    from cxr_device.run_layout import COHORT_SUMMARY, RunLayout
    from validation.bootstrap import format_interval as ci

    from .pipeline import Pipeline
    from .run_config import load_run_config

    config = load_run_config(demo_config_path())
    overrides = {k: v for k, v in (("n_patients", args.n_patients), ("seed", args.seed)) if v is not None}
    config.synthetic = replace(config.synthetic, **overrides)
    config.synthetic.validate()
    manifest = Pipeline(config, args.out, progress=not args.quiet and sys.stderr.isatty(),
                        log=lambda line: print(f"  {line}")).run(args.force)
    dicoms = write_demo_dicoms(args.out / "dicom", config.seed)
    run = RunLayout(args.out)
    metrics = json.loads(run.metrics.read_text())
    cohort = json.loads((run.cohort / COHORT_SUMMARY).read_text())
    test = metrics["splits"]["test"]
    print(f"cxr-device demo on SYNTHETIC data (phantoms, not patients) in {args.out}: "
          f"{' -> '.join(manifest['steps'])} in {manifest['wall_seconds']:.0f} s")
    print(f"  cohort     {cohort['n_images']} images, {cohort['n_patients']} patients, {cohort['n_positive']} "
          "pneumonia; " + ", ".join(f"{k} {v['n_images']}" for k, v in cohort["splits"].items()))
    print(f"  evaluation threshold {metrics['threshold']['value']:.3f} (max F1 on validation); test AUROC "
          f"{ci(test['auroc'])}, sensitivity {ci(test['sensitivity'])}, specificity {ci(test['specificity'])}")
    for name, where in (("bundle", "bundle (locked: every file hashed)"), ("documents", "submission"),
                        ("manifest", "manifest.json"), ("figures", "eda, evaluation")):
        print(f"  {name:<10} {args.out}/{where}")
    print("try:")
    print(f"  cxr-device check-dicom {args.out / 'dicom'}")
    print(f"  cxr-device predict --bundle {args.out / 'bundle'} " + " ".join(str(p) for p in dicoms.values())
          + f" --heatmap {args.out / 'heatmaps'}")
    print("the device as a DICOM node (two terminals; SRs come back into each image's study):")
    print(f"  cxr-device serve --bundle {args.out / 'bundle'} --port 11112 --out {args.out / 'node'}")
    print(f"  {_python()} -m pynetdicom storescu 127.0.0.1 11112 {args.out / 'dicom'} -aec CXR_DEVICE -aet DEMO")
    print(f"  then: {args.out / 'node' / 'results'}/<StudyInstanceUID>/*.dcm (DICOM SRs), "
          f"{args.out / 'node' / 'status.json'}")
    return _report_left_out("demo", manifest, args.out)


def _python() -> str:
    """How to call this interpreter in a printed command: relative when it is under the working folder."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return sys.executable
