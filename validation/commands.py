"""Subcommands of ``cxr-device`` that live in ``validation``: check-dicom and evaluate."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cxr_device.console import emit, input_files, output_file
from cxr_device.dicom_pixels import DEFAULT_MAX_PIXELS
from cxr_device.runtime.header_check import PASS
from cxr_device.runtime.input_rules import load_rules
from cxr_device.safe_text import terminal

from .dicom_check import check_paths
from .dicom_report import FORMATS, render, summary_line

EPILOG = """\
examples:
  cxr-device check-dicom exports/                            readable table on the terminal
  cxr-device check-dicom exports/ --format junit --out qa.xml   for a CI dashboard
  cxr-device check-dicom a.dcm b.dcm --rules site_rules.yaml --format json
  cxr-device check-dicom exports/ --decode --workers 4        also decode pixel data

statuses: pass (warnings allowed) | fail (an error finding) | unreadable (with the reason)
exit code: 0 all pass; 1 any fail or unreadable; 2 usage error (bad rules file, no files)
PHI: PatientName, PatientID and birth date are never printed unless --show-phi.
"""


def check_dicom_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-dicom", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        help="validate DICOM headers against the device's input rules (QA gate)",
        description="Check DICOM files before they reach the device: modality, body part, view position,\n"
        "photometry, bit depth, size, age, SOP class and presentation intent, against the default\n"
        "chest-radiograph rules or a site's own YAML. Every input appears once in the report.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files and/or folders (searched recursively)")
    p.add_argument("--rules", metavar="FILE", help="rules YAML (default: the built-in chest-radiograph rules)")
    p.add_argument("--format", choices=FORMATS, default="table", help="report format (default table)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the report here instead of standard output")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                   help="worker processes (default: min(4, CPU cores)); output order does not depend on it")
    p.add_argument("--decode", action="store_true", help="also decode pixel data to catch corrupt images (slower)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"with --decode: refuse images declaring more pixels than this (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--show-phi", action="store_true", help="include PatientName, PatientID, PatientBirthDate")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_check_dicom)


def _check_dicom(args: argparse.Namespace) -> int:
    if args.out:
        output_file(args.out)
    rules = load_rules(args.rules)
    paths = input_files(args.paths)
    results = check_paths(paths, rules, workers=args.workers, decode=args.decode, show_phi=args.show_phi,
                          progress=not args.quiet and sys.stderr.isatty(), max_pixels=args.max_pixels)
    emit(render(results, rules, args.format), args.out, summary_line(results), args.format == "table")
    return 0 if all(r.status == PASS for r in results) else 1


# --- evaluate ------------------------------------------------------------------------------
def evaluate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="assess a trained run: F1 threshold, metrics with 95%% CIs, subgroups, figures, locked bundle",
        description="Predict the validation and test splits of a trained run; choose the threshold on validation\n"
        "only (maximum F1, ties toward the higher threshold) and apply it unchanged to test; bootstrap\n"
        "patients for 95% intervals; report Youden's J and a target-sensitivity threshold beside it;\n"
        "subgroups by age band, sex and view. Writes RUN/evaluation/ and locks RUN/bundle/.",
        epilog="outputs: RUN/evaluation/ predictions.csv, metrics.json, roc.png, precision_recall.png,\n"
        "         threshold_curves.png, confusion_matrix.png, calibration.png, training_curves.png\n"
        "         RUN/bundle/ model.safetensors, input_rules.yaml, device.json (hashes of everything)\n"
        "exit code: 0 ok; 1 written, but images that could not be decoded were not scored (counted and\n"
        "         listed under left_out in metrics.json); 2 usage error or unusable run",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder with model/ (from `cxr-device train`)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--target-sensitivity", type=float, default=0.9, metavar="S",
                   help="sensitivity for the alternative operating point (default 0.90)")
    p.add_argument("--rules", metavar="FILE", help="input rules locked into the bundle (default: built-in chest rules)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .bootstrap import format_interval
    from .evaluation import evaluate_run  # imports torch: only when asked

    if args.bootstrap < 100:
        print("cxr-device evaluate: error: --bootstrap must be at least 100", file=sys.stderr)
        return 2
    m = evaluate_run(args.run, args.bootstrap, args.seed, args.target_sensitivity, args.rules,
                     progress=not args.quiet and sys.stderr.isatty())
    t = m["threshold"]
    print(f"threshold {t['value']:.6g} ({t['description']}): validation F1 {t['validation']['f1']:.3f}, "
          f"precision {t['validation']['precision']:.3f}, recall {t['validation']['recall']:.3f}")
    for name, s in m["splits"].items():
        line = ", ".join(f"{k} {format_interval(s[k])}" for k in ("auroc", "sensitivity", "specificity", "f1"))
        print(f"  {name:<4} ({s['n_images']} images, {s['n_positive']} positive): {line}")
    unstable = sum(r["unstable"] for r in m["subgroups"]["test"])
    print(f"  subgroups: {m['subgroups']['note']}" if m["subgroups"]["note"] else
          f"  subgroups: {len(m['subgroups']['test'])} on test ({unstable} flagged unstable: < 10 per class)")
    print(f"wrote {args.run / 'evaluation'} and locked {args.run / 'bundle'}")
    left_out = m["left_out"]
    if left_out["n"]:
        where = ", ".join(f"{split} {n}" for split, n in left_out["by_split"].items())
        print(f"cxr-device evaluate: {left_out['n']} image(s) could not be decoded and were not scored ({where}); "
              "first ones:", file=sys.stderr)
        for image in left_out["images"][:5]:
            print(terminal(f"  {image['image_id']} ({image['split']}): {image['reason']}"), file=sys.stderr)
        print(f"  all of them: {args.run / 'evaluation' / 'metrics.json'} (left_out)", file=sys.stderr)
        return 1
    return 0


