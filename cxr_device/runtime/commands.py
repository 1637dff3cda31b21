"""Subcommands of ``cxr-device`` for the locked device: predict, keygen, sign, verify.

Handlers turn arguments into calls of the runtime and print a short report; no logic here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import EXIT_BAD_INPUT, EXIT_OK
from ..console import emit, input_files, output_dir, output_file
from ..safe_text import terminal
from .signing import TRUSTED_KEY_ENV

_FORMATTER = argparse.RawDescriptionHelpFormatter
TRUSTED_KEY_HELP = (f"public key (PEM) the site pins: the bundle must carry a valid Ed25519 signature by it "
                    f"(default: ${TRUSTED_KEY_ENV} when set; otherwise hashes only, and a note says so)")


def add_trusted_key(p: argparse.ArgumentParser) -> None:
    """The ``--trusted-key`` option every command that loads a bundle offers."""
    p.add_argument("--trusted-key", type=Path, metavar="PEM", help=TRUSTED_KEY_HELP)


def load_verified_bundle(folder: Path, trusted_key: Path | None, quiet: bool = False):
    """Load a bundle, and say on stderr what its signature status means."""
    from .bundle import load_bundle  # imports torch: only when asked

    bundle = load_bundle(folder, trusted_key)
    if not quiet:
        print(f"bundle {terminal(folder)}: {bundle.signature.describe()}", file=sys.stderr)
    return bundle


# --- predict -------------------------------------------------------------------------------
PREDICT_EPILOG = """\
exit code: 0 every input accepted; 1 any refused or unreadable; 2 usage error or a bundle that
cannot be trusted (damaged, forged, or not signed by the pinned key)
PHI: files are identified by path and SOP Instance UID unless --show-phi.
Heat-map files are named <file stem>_<8 hex of the full path>_gradcam.png, so inputs with the
same name in different folders never overwrite each other.
"""


def predict_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", formatter_class=_FORMATTER, epilog=PREDICT_EPILOG,
        help="run the locked device on DICOM files: header checks, probability, decision (or a refusal)",
        description="Load and verify a bundle, check each DICOM against the bundle's input rules, and score the\n"
        "files that pass with the bundle's preprocessing, model and threshold. Files that fail the rules\n"
        "are refused with the findings; files whose pixels cannot be decoded or trusted (non-finite,\n"
        "constant, empty) are unreadable. No probability is computed for either.",
    )
    p.add_argument("paths", nargs="+", metavar="FILE", help="DICOM files (or folders); PNG/JPEG with --allow-non-dicom")
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder (RUN/bundle)")
    add_trusted_key(p)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (table)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the report here instead of standard output")
    p.add_argument("--heatmap", type=Path, metavar="DIR", help="write a Grad-CAM overlay PNG per accepted image")
    p.add_argument("--allow-non-dicom", action="store_true", help="also score PNG/JPEG (no header checks possible)")
    p.add_argument("--show-phi", action="store_true", help="include PatientName, PatientID, PatientBirthDate")
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from .pipeline import ACCEPTED, predict_files
    from .report import render, summary, summary_line

    if args.out:  # output locations are checked before the bundle is loaded and anything scored
        output_file(args.out)
    if args.heatmap:
        output_dir(args.heatmap)
    bundle = load_verified_bundle(args.bundle, args.trusted_key)
    paths = input_files(args.paths)
    results = predict_files(paths, bundle, args.allow_non_dicom, args.heatmap, args.show_phi)
    emit(render(results, args.format), args.out, summary_line(summary(results)), args.format == "table")
    return EXIT_OK if all(r.status == ACCEPTED for r in results) else EXIT_BAD_INPUT


# --- keygen / sign / verify ----------------------------------------------------------------
def keygen_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keygen", formatter_class=_FORMATTER,
        help="make an Ed25519 key pair for signing bundles (private key stays with the manufacturer)",
        description="Write OUT/signing_key.pem (private, file mode 0600: keep it off the devices, in your key\n"
        "store) and OUT/signing_key.pub.pem (public: give it to every site that runs the device, to pin\n"
        "with --trusted-key). Existing keys are never overwritten.",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the two key files")
    p.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    from .signing import fingerprint, generate_key_pair, load_public_key

    private, public = generate_key_pair(output_dir(args.out))
    print(f"private key {private} (keep secret)\npublic key  {public} "
          f"(fingerprint sha256 {fingerprint(load_public_key(public))})")
    return EXIT_OK


def sign_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sign", formatter_class=_FORMATTER,
        help="sign a locked bundle (Ed25519) so that sites pinning your public key can refuse forgeries",
        description="Verify the bundle's hashes, then sign the exact bytes of its device.json - which lists the\n"
        "sha256 of every other bundle file - and write BUNDLE/signature.json. Re-locking a bundle\n"
        "(`cxr-device evaluate`) removes the signature: sign again after every lock.",
        epilog="example:\n  cxr-device keygen --out keys/\n  cxr-device sign --bundle runs/x/bundle --key keys/signing_key.pem\n"
        "  cxr-device verify --bundle runs/x/bundle --trusted-key keys/signing_key.pub.pem",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder (RUN/bundle)")
    p.add_argument("--key", required=True, type=Path, metavar="PEM", help="Ed25519 private key (cxr-device keygen)")
    p.set_defaults(handler=_sign)


def _sign(args: argparse.Namespace) -> int:
    from .bundle import load_bundle
    from .signing import sign_bundle

    # never sign a damaged bundle; a key pinned in the environment is for using bundles, and
    # would refuse the (as yet unsigned) bundle being signed
    load_bundle(args.bundle, environment_key=False)
    path = sign_bundle(args.bundle, args.key)
    print(f"signed {args.bundle / 'device.json'} -> {path}")
    return EXIT_OK


def verify_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", formatter_class=_FORMATTER,
        help="check a bundle before use: hashes, fields, weights, rules and (with a pinned key) its signature",
        description="Everything predict checks before it scores: the signature against the pinned key, the sha256\n"
        "of every file, each field of device.json, the input rules and that the weights fit the\n"
        "architecture. Prints the device's identity (name, version, device.json sha256).",
        epilog="exit code: 0 the bundle can be used (and, with a key, is signed by it); 2 it cannot",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder (RUN/bundle)")
    add_trusted_key(p)
    p.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    bundle = load_verified_bundle(args.bundle, args.trusted_key, quiet=True)
    meta = bundle.meta
    print(f"bundle {terminal(args.bundle)}: usable")
    print(f"  device       {terminal(meta.get('device', ''))}")
    print(f"  version      {terminal(meta.get('package_version', ''))}")
    print(f"  device.json  sha256 {bundle.device_sha256}")
    print(f"  threshold    {bundle.threshold:.6g} ({terminal(meta['threshold']['rule'])})")
    print(f"  signature    {bundle.signature.describe()}")
    return EXIT_OK
