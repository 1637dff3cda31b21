"""Subcommands of ``cxr-device`` that live in ``validation``: check-dicom."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cxr_device.dicom_pixels import DEFAULT_MAX_PIXELS

from .dicom_check import PASS, check_paths, collect_paths
from .dicom_report import FORMATS, render, summary_line
from .dicom_rules import load_rules

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
    rules = load_rules(args.rules)
    paths = collect_paths(args.paths)
    if not paths:
        print(f"cxr-device check-dicom: error: no files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    progress = not args.quiet and sys.stderr.isatty()
    results = check_paths(paths, rules, workers=args.workers, decode=args.decode, show_phi=args.show_phi,
                          progress=progress, max_pixels=args.max_pixels)
    report = render(results, rules, args.format)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(f"{summary_line(results)} -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(report)
        if args.format != "table":
            print(summary_line(results), file=sys.stderr)
    return 0 if all(r.status == PASS for r in results) else 1
