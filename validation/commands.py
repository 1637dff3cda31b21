"""Subcommands of ``cxr-device`` that live in ``validation``: check-dicom, evaluate, assess, compare and monitor."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cxr_device.console import emit, input_files, output_file
from cxr_device.dicom_pixels import DEFAULT_MAX_PIXELS
from cxr_device.errors import CxrDeviceError
from cxr_device.runtime.calibration import METHODS as CALIBRATION_METHODS
from cxr_device.runtime.header_check import PASS
from cxr_device.runtime.input_rules import load_rules
from cxr_device.safe_text import terminal

from .dicom_check import check_paths
from .dicom_report import FORMATS, render, summary_line
from .threshold import DEFAULT_TOLERANCE, MAX_F1, POLICIES

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
        help="evaluate a trained run: calibration, threshold, metrics with 95%% CIs, subgroups, figures, locked bundle",
        description="Predict the validation and test splits of a trained run; fit the calibration (Platt scaling by\n"
        "default) and choose the threshold on validation only, by the threshold policy (maximum F1 by default,\n"
        "ties toward the higher threshold), and apply both unchanged to test; bootstrap patients for 95%\n"
        "intervals; report every policy's operating point beside the locked one; subgroups by age band, sex and\n"
        "view. Writes RUN/evaluation/ and locks RUN/bundle/ (weights, calibration, threshold, input rules).\n\n"
        "threshold policies (chosen on the calibrated validation probabilities):\n"
        "  max_f1              maximum F1 (the default)\n"
        "  youden              maximum sensitivity + specificity - 1\n"
        "  target_sensitivity  the highest threshold reaching --threshold-target sensitivity\n"
        "  target_specificity  the lowest threshold reaching --threshold-target specificity\n"
        "  f1_plateau          the centre of the thresholds whose F1 is within --plateau-tolerance of the\n"
        "                      maximum: on a nearly separable validation split it stays away from both classes",
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
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default="platt",
                   help="fitted on validation: platt (default) | temperature | none")
    p.add_argument("--threshold-policy", choices=POLICIES, default=MAX_F1, metavar="POLICY",
                   help=f"how the locked threshold is chosen: {' | '.join(POLICIES)} (default max_f1)")
    p.add_argument("--threshold-target", type=float, metavar="X",
                   help="the sensitivity or specificity the target_* policies must reach; the least sensitivity of "
                   "max_accuracy")
    p.add_argument("--plateau-tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="D",
                   help=f"F1 below the maximum still on the plateau (f1_plateau; default {DEFAULT_TOLERANCE})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from .bootstrap import format_interval
    from .evaluation import evaluate_run  # imports torch: only when asked

    m = evaluate_run(args.run, args.bootstrap, args.seed, args.target_sensitivity, args.rules,
                     progress=not args.quiet and sys.stderr.isatty(), calibration=args.calibration,
                     policy=policy_from_args(args.threshold_policy, args.threshold_target, args.plateau_tolerance))
    t, c = m["threshold"], m["calibration"]
    print(f"calibration {c['method']} on validation: ECE {c['val']['before']['ece']:.3f} -> {c['val']['after']['ece']:.3f}, "
          f"NLL {c['val']['before']['nll']:.3f} -> {c['val']['after']['nll']:.3f}")
    print(f"threshold {t['value']:.6g} ({t['description']}; {t['raw_threshold']:.4g} before calibration): "
          f"validation F1 {t['validation']['f1']:.3f}, precision {t['validation']['precision']:.3f}, "
          f"recall {t['validation']['recall']:.3f}")
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




def policy_from_args(rule: str, target: float | None, tolerance: float):
    """A :class:`ThresholdPolicy` from flags; a policy that cannot work is a usage error."""
    from .threshold import ThresholdPolicy

    try:
        return ThresholdPolicy(rule, target, tolerance)
    except ValueError as err:
        raise CxrDeviceError(f"{err} (--threshold-policy, --threshold-target, --plateau-tolerance)") from None


# --- assess --------------------------------------------------------------------------------
ASSESS_EPILOG = """\
examples:
  cxr-device assess --bundle runs/peds/bundle --name kermany-val --folders chest_xray/val
  cxr-device assess --bundle runs/nih/bundle --name site-a --dicom exports/ --labels labels.csv \\
      --trusted-key keys/signing_key.pub.pem --profile my_device.yaml
  cxr-device assess --bundle runs/nih/bundle --name nih16 --metadata Data_Entry_2017_v2020.csv.gz \\
      --images nih/images_1024
  cxr-device assess --bundle runs/x/bundle --name internal --cohort runs/x/cohort --split test

--labels CSV: the columns path,label; path relative to --dicom (or absolute), label 0 or 1.
outputs (OUT, default RUN/assessment/NAME): predictions.csv (every labelled input, scored or not,
  with its status and reason), assessment.json (metrics over accepted inputs and with refusals
  counted as failures; AUROC by DeLong and patient bootstrap, sensitivity/specificity/PPV/NPV/
  accuracy by Clopper-Pearson, Wilson and bootstrap; F1, Brier, ECE; PPV/NPV at the profile's
  prevalence; acceptance pass/fail on lower bounds; subgroups; the shift report against the
  bundle's internal test split), figures (roc.png, precision_recall.png, reliability.png,
  confusion_matrix.png, score_shift.png)
exit code: 0 every input scored; 1 written, but inputs were refused, unreadable or unmatched
  (counted and listed); 2 usage error, unusable input, or a bundle that cannot be trusted
"""


def assess_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "assess", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ASSESS_EPILOG,
        help="standalone performance of a locked bundle on data it has never seen (nothing re-tuned)",
        description="Verify the bundle, then score every labelled input through exactly the path predict uses\n"
        "(the bundle's input rules for DICOM, the one preprocessing, the model, its calibration and the locked\n"
        "threshold) and report performance with 95% intervals, the methods named. Nothing is tuned on the\n"
        "assessed data; refused, unreadable and unmatched inputs are counted and listed.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder (RUN/bundle)")
    p.add_argument("--name", required=True, help="a name for this set (letters, digits, . _ -); OUT defaults to "
                   "RUN/assessment/NAME")
    add_source_arguments(p)
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default RUN/assessment/NAME)")
    p.add_argument("--profile", type=Path, metavar="YAML",
                   help="device profile: its acceptance criteria are judged and its expected_prevalence used for PPV/NPV")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    from cxr_device.runtime.commands import add_trusted_key

    add_trusted_key(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_assess)


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """The labelled-set options of ``assess`` and ``compare`` (read by :func:`input_set`)."""
    source = p.add_argument_group("the labelled set (exactly one)")
    source.add_argument("--cohort", type=Path, metavar="DIR", help="a cohort folder (with --split, default test)")
    source.add_argument("--split", default="test", help="the cohort split to use (default test)")
    source.add_argument("--folders", type=Path, metavar="ROOT", help="NORMAL/PNEUMONIA class folders")
    source.add_argument("--metadata", type=Path, metavar="CSV", help="NIH-format metadata (with --images)")
    source.add_argument("--images", nargs="+", action="extend", default=[], metavar="DIR",
                        help="image folders for --metadata")
    source.add_argument("--dicom", type=Path, metavar="DIR", help="a folder of DICOM files (with --labels)")
    source.add_argument("--labels", type=Path, metavar="CSV", help="path,label CSV for --dicom")


def _assess(args: argparse.Namespace) -> int:
    from cxr_device.console import check_output_dir
    from cxr_device.run_layout import RunLayout, check_name
    from cxr_device.runtime.commands import load_verified_bundle

    from .acceptance import read_targets
    from .assessment import assess, left_out, summary_lines
    from .assessment_inputs import input_set

    out = check_output_dir(args.out or RunLayout(args.bundle.resolve().parent).assessment(check_name(args.name)))
    targets = read_targets(args.profile)
    inputs = input_set(vars(args))
    bundle = load_verified_bundle(args.bundle, args.trusted_key)
    document = assess(bundle, inputs, out, args.name, targets.acceptance, targets.prevalence, args.bootstrap,
                      args.seed, progress=not args.quiet and sys.stderr.isatty())
    for line in summary_lines(document):
        print(terminal(line))
    print(f"wrote {out}")
    missing = left_out(document)
    if missing:
        print(f"cxr-device assess: {missing} input(s) left out (excluded before scoring, refused or unreadable): "
              f"listed in {out / 'assessment.json'}", file=sys.stderr)
        return 1
    return 0


# --- compare -------------------------------------------------------------------------------
COMPARE_EPILOG = """\
examples:
  cxr-device compare --baseline runs/v1/bundle --candidate runs/v2/bundle --name site-a \\
      --dicom sequestered/ --labels labels.csv --profile my_device.yaml --run runs/v2
  cxr-device compare --baseline runs/v1/bundle --candidate runs/v2/bundle --name peds-test \\
      --folders chest_xray/test --out comparisons/peds-test

statistics (differences are candidate - baseline, on the inputs both devices scored):
  AUROC        paired DeLong (DeLong, DeLong & Clarke-Pearson 1988): z test and 95% interval
  sensitivity, each device at its own locked threshold: Newcombe (1998) method 10 interval
  specificity  (hybrid score, phi-corrected, no continuity correction) and exact McNemar test
  agreement    2x2 table of the decisions and Cohen's kappa
  refusals     inputs either device refused or could not read, listed with both reasons
margins (profile pccp.margins; defaults without --profile): the lower 95% bound of each difference
  must be above its margin (AUROC -0.02, sensitivity -0.05, specificity -0.05), and the candidate
  may leave at most 1% more of the inputs unscored. Verdict: met | not met | not enough data
  (fewer than min_positives / min_negatives (30) scored by both, an undefined interval, or a set
  too small for even an identical candidate to meet a margin).
outputs (OUT: RUN/comparison/NAME with --run, else --out): predictions.csv (every labelled input
  with both devices' status, probability, decision and reason), comparison.json, roc.png (both
  curves and operating points), report.html (self-contained)
exit code: 0 verdict met and every labelled input matched; 1 verdict not met or not enough data,
  or inputs excluded before scoring (unmatched or invalid labels: listed); 2 usage error,
  unusable input, or a bundle that cannot be trusted
"""


def compare_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=COMPARE_EPILOG,
        help="paired comparison of a retrained device with the released one, judged on the PCCP margins",
        description="Verify both locked bundles, score the same labelled inputs with each through exactly the path\n"
        "predict and assess use (each at its own locked threshold; nothing tuned), and compare them pairwise:\n"
        "AUROC, sensitivity and specificity differences with intervals and tests, agreement of the decisions,\n"
        "and the inputs either device left unscored. The verdict against the profile's PCCP margins gates a\n"
        "release: only 'met' exits 0.",
    )
    p.add_argument("--baseline", required=True, type=Path, metavar="BUNDLE", help="the released device's bundle")
    p.add_argument("--candidate", required=True, type=Path, metavar="BUNDLE", help="the retrained device's bundle")
    p.add_argument("--name", required=True, help="a name for this set (letters, digits, . _ -)")
    add_source_arguments(p)
    where = p.add_argument_group("where the outputs go (exactly one)")
    where.add_argument("--run", type=Path, metavar="RUN", help="the run the comparison belongs to (usually the "
                       "candidate's): writes RUN/comparison/NAME, which its PCCP document cites")
    where.add_argument("--out", type=Path, metavar="DIR", help="an output folder of your choice")
    p.add_argument("--profile", type=Path, metavar="YAML", help="device profile: its pccp.margins are judged")
    from cxr_device.runtime.commands import add_trusted_key

    add_trusted_key(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_compare)


def compare_output(run: Path | None, out: Path | None, name: str) -> Path:
    """RUN/comparison/NAME or OUT; exactly one of the two."""
    from cxr_device.run_layout import RunLayout, check_name

    check_name(name)
    if (run is None) == (out is None):
        raise CxrDeviceError("give --run RUN (the outputs go to RUN/comparison/NAME) or --out DIR, not "
                             + ("both" if run else "neither"))
    if run is not None and not run.is_dir():
        raise CxrDeviceError(f"{run}: not a run folder (given with --run); give the run the comparison belongs to, "
                             "or --out DIR")
    return out if out is not None else RunLayout(run).comparison(name)


def _compare(args: argparse.Namespace) -> int:
    from cxr_device.console import check_output_dir
    from cxr_device.runtime.commands import load_verified_bundle

    from .assessment_inputs import input_set
    from .comparison import COMPARISON, compare, summary_lines
    from .margins import MET, read_margins

    out = check_output_dir(compare_output(args.run, args.out, args.name))
    margins, source = read_margins(args.profile)
    inputs = input_set(vars(args))
    baseline = load_verified_bundle(args.baseline, args.trusted_key, quiet=True)
    candidate = load_verified_bundle(args.candidate, args.trusted_key, quiet=True)
    for role, bundle in (("baseline", baseline), ("candidate", candidate)):  # once both are known to load
        print(terminal(f"{role} bundle {bundle.folder}: {bundle.signature.describe()}"), file=sys.stderr)
    document = compare(baseline, candidate, inputs, out, args.name, margins, source,
                       progress=not args.quiet and sys.stderr.isatty())
    for line in summary_lines(document):
        print(terminal(line))
    print(f"wrote {out}")
    excluded = document["inputs"]["n_excluded"]
    if excluded:
        print(f"cxr-device compare: {excluded} labelled input(s) excluded before scoring (unmatched or invalid "
              f"labels): listed in {out / COMPARISON} (inputs.excluded); fix the set and compare again",
              file=sys.stderr)
    return 0 if document["verdict"] == MET and not excluded else 1


# --- monitor -------------------------------------------------------------------------------
MONITOR_EPILOG = """\
examples:
  cxr-device monitor --node /var/lib/cxr-node --bundle /opt/cxr/bundle --profile my_device.yaml \\
      --out reports/2026-12
  cxr-device monitor --node /var/lib/cxr-node --bundle /opt/cxr/bundle --since 2026-12-01 --out reports/2026-12-w1

reads (never an image): NODE/results/*/study.json, NODE/node.log, NODE/status.json
signals, over the window, per UTC day, and per calling AE title, manufacturer and model name:
  volume       studies and images
  refusals     studies of which no image was scored; crossed above the upper p-chart limit of the
               profile's study.refusal_limit for the studies counted; images by reason; stores the
               node refused (node.log)
  flag rate    studies flagged among those scored, against exact binomial p-chart limits around
               prevalence x sensitivity + (1 - prevalence) x (1 - specificity) (the bundle's internal
               test operating point; expected_prevalence of the profile, else the test split's)
  score drift  accepted images' probabilities against the bundle's reference scores: PSI above
               postmarket.psi_limit or KS p below postmarket.drift_p_value, judged from
               postmarket.drift_min_scores scores on
  time to notification  last image received -> result acknowledged by the PACS (forwarding node) or
               SR written (otherwise), on the node's monotonic clock: p50, p95, max
outputs in OUT: monitor.json (sorted keys, no clock time of its own), report.html (self-contained),
  volume.png, p_charts.png, scores.png, ttn.png (those with data)
exit code: 0 every limit held and every study record was read; 1 a limit was crossed or a study
  record could not be read (each listed under crossings in monitor.json); 2 usage error, a node
  folder that cannot be read, or a bundle that cannot be trusted
"""


def monitor_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=MONITOR_EPILOG,
        help="post-market monitoring of a DICOM node: volume, refusals, flag rate, score drift, time to notification",
        description="Read what a running (or stopped) node recorded - its study records, log and status, never an\n"
        "image - and report the signals of the post-market plan with their control limits, over the\n"
        "window and broken down by day, calling AE title, manufacturer and model name. Exits 1 when a\n"
        "limit is crossed, so a scheduled job or a CI step can alert.",
    )
    p.add_argument("--node", required=True, type=Path, metavar="DIR", help="the node's folder (serve --out)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for monitor.json and report.html")
    p.add_argument("--bundle", type=Path, metavar="BUNDLE",
                   help="the locked bundle the node runs: its operating point and reference scores (without it the "
                   "flag rate and the drift are not judged)")
    p.add_argument("--profile", type=Path, metavar="YAML",
                   help="device profile: postmarket limits, study.refusal_limit, expected_prevalence (default values "
                   "without it)")
    p.add_argument("--since", metavar="DATE", help="only studies from this UTC date (YYYY-MM-DD) or ISO 8601 time on")
    from cxr_device.runtime.commands import add_trusted_key

    add_trusted_key(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from cxr_device.console import check_output_dir, output_dir
    from cxr_device.runtime.commands import load_verified_bundle

    from .monitor import monitor, summary_lines
    from .monitor_limits import read_monitor_limits
    from .node_records import parse_since, read_node

    since = parse_since(args.since)
    check_output_dir(args.out)
    limits = read_monitor_limits(args.profile)
    node = read_node(args.node, since, progress=not args.quiet and sys.stderr.isatty())
    bundle = load_verified_bundle(args.bundle, args.trusted_key) if args.bundle else None
    document = monitor(node, bundle, limits, since, output_dir(args.out))
    for line in summary_lines(document):
        print(terminal(line))
    print(f"wrote {terminal(args.out)}")
    return 1 if document["crossings"] else 0
