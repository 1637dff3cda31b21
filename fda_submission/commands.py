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
  cxr-device submission --run runs/nih --check --profile my_device.yaml
  cxr-device submission --run runs/nih --out runs/nih/submission --profile my_device.yaml \\
      --format md,html,pdf --junit build/junit.xml
  cxr-device submission --run runs/nih --out draft --allow-findings      (a draft, findings listed in it)
  cxr-device submission --verify runs/nih/submission --run runs/nih      (every number against the run)

What is written (in --out): the package index, device description, algorithm description,
validation plan, 510(k) summary, labeling (IFU draft), risk management file, usability summary,
software documentation, cybersecurity, PCCP and postmarket plan, and the appendices (provenance,
SOUP, traceability) - each as .md, .html and/or .pdf -, figures/, sbom.cdx.json (CycloneDX SBOM of
the device runtime, measured), checks.json (findings, fields to fill, untraced numbers),
trace.json and evidence/.

Before rendering, the consistency check compares the run, the locked bundle, the assessments and
the device profile and looks for claims the run does not back; every finding names both sides.
With a finding nothing is rendered (exit 1) unless --allow-findings, which renders documents that
list the open findings at their top. --check runs the checks alone and prints the findings and
every field a person still has to fill (a visible [TBC: ...] field in the documents, listed with
its profile key in the package index). The device's one claim (profile claim.type: cadt - triage
and notification, 21 CFR 892.2080, QFM - or cade) words every document; the other claim's
wording is a finding.

The words and values a person owns come from the device profile; start from
fda_submission/profiles/device_profile.yaml. Everything else comes from the run: cohort/, eda/,
model/, evaluation/, bundle/, assessment/.

Every number a document prints is traced: trace.json says, for each, its document and section,
the file of the run (or profile key) and the place in it; evidence/ carries the run's files the
documents cite, the profile, the JUnit report and the derived values, each with its sha256.
--verify PACKAGE --run RUN reads every number again from its source and every document back, and
names each number that was edited, added, has no source, or no longer matches the run.

exit code: 0 rendered (or checked, or verified) with no finding; 1 consistency findings (not
rendered, or rendered with --allow-findings, or found by --check) or verification findings; 2 usage
error or unusable input
"""


def submission_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submission", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SUBMISSION_EPILOG,
        help="check a run for consistency and render the submission package (Markdown, HTML, PDF, SBOM)",
        description="Render the 510(k)-style submission package from a run directory, after checking that\n"
        "the run, the locked bundle, the assessments and the device profile agree. Numbers, tables and\n"
        "figures are the run's own and name their files; profile values are marked. A run on synthetic\n"
        "data gets a banner.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder (cohort/, eda/, model/, evaluation/, bundle/, "
                   "assessment/)")
    p.add_argument("--out", type=Path, help="output folder for the documents (required unless --check)")
    p.add_argument("--profile", type=Path, help="device profile YAML (default: the template profile)")
    p.add_argument("--format", default="md,html", help="comma-separated: md, html, pdf (default md,html)")
    p.add_argument("--junit", type=Path, help="JUnit report of the test suite, for the traceability matrix and "
                   "the verification of the risk controls")
    p.add_argument("--check", action="store_true", help="run the consistency and completeness checks only; print "
                   "every finding and every field to fill; write nothing")
    p.add_argument("--allow-findings", action="store_true", help="render even with consistency findings; every "
                   "document then lists them at its top (a draft, not for submission)")
    p.add_argument("--verify", type=Path, metavar="PACKAGE", help="re-check a rendered package against --run: its "
                   "evidence files, its derived values, every traced number read again from its source, and every "
                   "number of its documents (edited, added or without a source); writes nothing")
    p.set_defaults(handler=_submission)


def _verify(args: argparse.Namespace) -> int:
    from .verify import verify_package

    findings = verify_package(args.verify, args.run, args.profile)
    for finding in findings:
        print(finding.line())
    print(f"{args.verify}: {len(findings)} finding(s) against run {args.run}" if findings else
          f"{args.verify}: verified against run {args.run}: every evidence file, derived value and number matches")
    return 1 if findings else 0


def _submission(args: argparse.Namespace) -> int:
    from cxr_device.errors import CxrDeviceError

    from .render import check_formats, prepare, report_lines, write_package

    if args.verify:
        if args.out or args.check:
            raise CxrDeviceError("--verify checks a rendered package: give it with --run only (not --out or --check)")
        return _verify(args)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if not args.check:
        if args.out is None:
            raise CxrDeviceError("--out is required to render the documents (or give --check to check only)")
        check_output_dir(args.out)
        check_formats(formats)
    prepared = prepare(args.run, args.profile, matrix_rows(args.junit) if args.junit else None, args.junit)
    for line in report_lines(prepared):
        print(line)
    if args.check:
        return 1 if prepared.findings else 0
    if prepared.findings and not args.allow_findings:
        print("nothing rendered: resolve the findings above, or give --allow-findings for a draft that lists them",
              file=sys.stderr)
        return 1
    for paths in write_package(prepared, args.out, formats).values():
        for path in paths:
            print(f"wrote {path}")
    return 1 if prepared.findings else 0


SBOM_EPILOG = """\
examples:
  cxr-device sbom --bundle runs/nih/bundle --out runs/nih/sbom.cdx.json --profile my_device.yaml
  cxr-device sbom --bundle runs/nih/bundle --out runs/nih/sbom.cdx.json --audit      (with a vulnerability scan)

The SBOM lists every distribution that `predict`, `serve` and `assess` load, measured by importing
what they can load (lazy imports included) in a fresh interpreter of this environment - modules
and shared libraries - with version, supplier, licence, a sha256 over its installed RECORD, and
its level and end of support from fda_submission/security/support.yaml ("unknown" otherwise). It
flags licences that constrain distribution and names the device by its name, version (profile) and
device.json sha256. `cxr-device submission` writes the same file.

--audit runs pip-audit on the components (PyPI advisories by default) under a timeout and writes the
dated scan record to RUN/security/vulnerability_scan.json, which the SBOM and the cybersecurity
document then carry; a component the service could not audit is "not audited", never "no known
vulnerability". Without a scan record both say "not scanned".
"""


def sbom_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sbom", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SBOM_EPILOG,
        help="CycloneDX SBOM (JSON) of a locked device's runtime",
        description="Write the CycloneDX 1.6 SBOM of the runtime of a locked bundle, measured in this environment.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="locked bundle folder (device.json)")
    p.add_argument("--out", required=True, type=Path, help="SBOM file to write (e.g. sbom.cdx.json)")
    p.add_argument("--profile", type=Path, help="device profile YAML, for the device name, version and manufacturer")
    p.add_argument("--audit", action="store_true", help="scan the components for known vulnerabilities with pip-audit "
                   "and keep the dated record in the run (security/vulnerability_scan.json)")
    p.add_argument("--audit-service", choices=("pypi", "osv"), default="pypi", help="advisory service (default pypi)")
    p.add_argument("--audit-timeout", type=float, default=120.0, metavar="S",
                   help="stop the scan after S seconds; the record then says not scanned (default 120)")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="date of the scan record (default: today)")
    p.set_defaults(handler=_sbom)


def _sbom(args: argparse.Namespace) -> int:
    import datetime as dt

    from cxr_device.console import write_text
    from cxr_device.errors import CxrDeviceError

    from .sbom import sbom_for_bundle, sbom_record
    from .security.vulnerabilities import scan, scan_summary, write_scan

    record = None
    if args.audit:
        try:
            date = dt.date.fromisoformat(args.date).isoformat() if args.date else dt.date.today().isoformat()
        except ValueError:
            raise CxrDeviceError(f"--date {args.date!r}: expected YYYY-MM-DD") from None
        components = [(c["name"], c["version"]) for c in sbom_record()["components"]]
        record = scan(components, date, args.audit_service, args.audit_timeout)
        where = write_scan(Path(args.bundle).parent, record)
        print(f"vulnerability scan: {scan_summary(record)}; record in {where}")
    text, flagged = sbom_for_bundle(args.bundle, args.profile, record)
    write_text(args.out, text)
    print(f"wrote {args.out}")
    for line in flagged:
        print(f"  licence constrains distribution: {line}")
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
    left_out = _report_left_out("run", manifest, out)
    findings = _report_findings("run", manifest, out)
    return 1 if left_out or findings else 0


def _report_findings(command: str, manifest: dict, out: Path) -> int:
    """Say on stderr which consistency findings make the documents drafts; their number."""
    from cxr_device.safe_text import terminal

    findings = manifest["steps"].get("submission", {}).get("consistency_findings") or []
    if findings:
        print(f"cxr-device {command}: the documents are drafts: the consistency check found (also in "
              f"{out / 'submission' / 'checks.json'}):", file=sys.stderr)
        for line in findings:
            print(f"  {terminal(line)}", file=sys.stderr)
    return len(findings)


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
    config.synthetic = replace(config.synthetic, **overrides)  # validated: ranges and types
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
    if _report_findings("demo", manifest, args.out):
        print("  (expected of the demo: synthetic phantoms, no external set assessed; a real run resolves them - "
              "see `cxr-device submission --check`)", file=sys.stderr)
    return _report_left_out("demo", manifest, args.out)


def _python() -> str:
    """How to call this interpreter in a printed command: relative when it is under the working folder."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return sys.executable
