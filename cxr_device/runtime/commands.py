"""Subcommands of ``cxr-device`` for the locked device: predict, serve, keygen, sign, verify.

Handlers turn arguments into calls of the runtime and print a short report; no logic here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import EXIT_BAD_INPUT, EXIT_OK
from ..console import emit, input_files, output_dir, output_file
from ..errors import CxrDeviceError
from ..safe_text import terminal
from .signing import TRUSTED_KEY_ENV

_FORMATTER = argparse.RawDescriptionHelpFormatter
TRUSTED_KEY_HELP = (f"public key (PEM) the site pins: the bundle must carry a valid Ed25519 signature by it "
                    f"(default: ${TRUSTED_KEY_ENV} when set; otherwise hashes only, and a note says so)")


def args_debug(args: argparse.Namespace) -> bool:
    """Whether ``--debug`` (or CXR_DEVICE_DEBUG) asks for full texts."""
    import os

    return bool(getattr(args, "debug", False)) or os.environ.get("CXR_DEVICE_DEBUG", "") not in ("", "0")


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
DICOM results (--dicom-out DIR): DIR/<StudyInstanceUID>/<SOPInstanceUID of the result>.dcm, one
TID 1500 Structured Report per DICOM input (accepted: finding, probability, threshold, decision;
refused or unreadable: why it was not read), in the input's study, new series; with
--secondary-capture also a Grad-CAM Secondary Capture per accepted image (NOT FOR PRIMARY
DIAGNOSIS, burned in). DIR/<StudyInstanceUID>/study.json lists the study's images and its chosen
frontal image. Result UIDs derive from the input and the bundle: a re-run keeps existing results.
examples:
  cxr-device predict --bundle runs/x/bundle study/*.dcm
  cxr-device predict --bundle runs/x/bundle study/ --format json --out results.json
  cxr-device predict --bundle runs/x/bundle study/ --dicom-out results/ --secondary-capture
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
    p.add_argument("--dicom-out", type=Path, metavar="DIR",
                   help="also write a DICOM Structured Report per DICOM input into DIR/<StudyInstanceUID>/")
    p.add_argument("--secondary-capture", action="store_true",
                   help="with --dicom-out: also a Grad-CAM Secondary Capture per accepted image")
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from .pipeline import ACCEPTED, predict_files
    from .report import render, summary, summary_line

    if args.secondary_capture and not args.dicom_out:
        raise CxrDeviceError("--secondary-capture needs --dicom-out DIR (where the Secondary Captures go)")
    if args.out:  # output locations are checked before the bundle is loaded and anything scored
        output_file(args.out)
    if args.heatmap:
        output_dir(args.heatmap)
    if args.dicom_out:
        output_dir(args.dicom_out)
    bundle = load_verified_bundle(args.bundle, args.trusted_key)
    paths = input_files(args.paths)
    if args.dicom_out:
        from .dicom_results import score_to_dicom, written_line
        from .pipeline import DevicePipeline

        results, written = score_to_dicom(DevicePipeline(bundle), paths, args.dicom_out, args.secondary_capture,
                                          args.heatmap, allow_non_dicom=args.allow_non_dicom, show_phi=args.show_phi)
        print(terminal(written_line(written, args.dicom_out)), file=sys.stderr)
    else:
        results = predict_files(paths, bundle, args.allow_non_dicom, args.heatmap, args.show_phi)
    emit(render(results, args.format), args.out, summary_line(summary(results)), args.format == "table")
    return EXIT_OK if all(r.status == ACCEPTED for r in results) else EXIT_BAD_INPUT


# --- serve ---------------------------------------------------------------------------------
SERVE_EPILOG = """\
what it does: a DICOM Storage SCP. Each received image is written to OUT/incoming/ before the
C-STORE is acknowledged, checked with the bundle's input rules, scored, and answered with a DICOM
Structured Report in the image's own study (OUT/results/<StudyInstanceUID>/; refused images get
an SR that says why), then moved to OUT/done/. Images received but not processed when the node
stopped are processed at the next start; a result already written is never written twice.
Statuses: 0x0000 only for an image the node will answer (or already answered: a duplicate);
0x0122 a non-image SOP class; 0xC210 an unparsable dataset; 0xA900 a dataset whose SOP class or
SOP instance does not match the request, or without a usable StudyInstanceUID/SOPInstanceUID;
0x0111 other content under a SOPInstanceUID already received (kept in OUT/quarantine/); 0xA700
over --max-dataset-mb or a full disk. Every patient and study attribute reaches the SR byte for
byte. Logs: JSON lines on stderr and in OUT/node.log (source UIDs hashed, no patient data; every
rejected association with the calling and called AE, peer and reason); counts, pid and queue in
OUT/status.json (`cxr-device status --node OUT` tells a running node from one that died).
SIGINT/SIGTERM stop it cleanly.
TLS (DICOM PS3.15 Annex B, BCP 195): --tls-cert/--tls-key make the port TLS-only (TLS 1.2+);
with --tls-ca callers must present a certificate signed by that CA (mutual TLS). --forward-tls-ca
(and optionally --forward-tls-cert/--forward-tls-key) forward to the PACS over TLS.
examples:
  cxr-device serve --bundle runs/demo/bundle --port 11112 --out runs/demo/node
  cxr-device serve --bundle /opt/cxr/bundle --out /var/lib/cxr-device --ae-title CXR_DEVICE \\
      --allow-ae PACS --allow-ae ROUTER --forward PACS@10.0.0.5:104 --trusted-key /etc/cxr/key.pub.pem
  cxr-device serve --bundle /opt/cxr/bundle --out /var/lib/cxr-device --port 2762 --allow-ae PACS \\
      --tls-cert node.pem --tls-key node.key --tls-ca hospital-ca.pem \\
      --forward PACS@pacs.example:2762 --forward-tls-ca hospital-ca.pem
  storescu -aet PACS -aec CXR_DEVICE 127.0.0.1 11112 image.dcm                 # DCMTK: send an image
  echoscu +tls client.key client.pem +cf hospital-ca.pem -aec CXR_DEVICE HOST 2762   # C-ECHO over TLS
exit code: 0 stopped cleanly; 2 a bad option, a port in use, a certificate or key that cannot be
used, a bundle that cannot be trusted, or a worker that stopped unexpectedly (nothing received is
lost: it is processed at the next start)
See docs/dicom-node.md for connecting a PACS, TLS, running it as a service, and the limits.
"""


def serve_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", formatter_class=_FORMATTER, epilog=SERVE_EPILOG,
        help="run the locked device as a DICOM node: receive images (C-STORE), answer with DICOM SRs",
        description="Listen for DICOM images from a PACS or router, gate and score them with the locked bundle, and\n"
        "write (and optionally forward) a DICOM Structured Report per image into the image's study.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder (RUN/bundle)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the node's folder (incoming, results, ...)")
    p.add_argument("--port", type=int, default=11112, help="TCP port to listen on (default 11112; 0: any free port)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0: every interface)")
    p.add_argument("--ae-title", default="CXR_DEVICE", help="the node's AE title; callers must call it (CXR_DEVICE)")
    p.add_argument("--allow-ae", action="append", default=[], metavar="AE",
                   help="accept associations only from this calling AE title (repeat; default: any caller)")
    p.add_argument("--forward", metavar="AE@HOST:PORT", help="send every result by C-STORE to this Storage SCP")
    p.add_argument("--secondary-capture", action="store_true",
                   help="also answer accepted images with a Grad-CAM Secondary Capture (not for primary diagnosis)")
    p.add_argument("--max-associations", type=int, default=8,
                   help="live associations at once; the next is rejected (transient, local limit exceeded) (8)")
    p.add_argument("--max-dataset-mb", type=float, default=512.0,
                   help="larger datasets are refused with 0xA700 (default 512 MB)")
    tls = p.add_argument_group("DICOM over TLS (PEM files)")
    tls.add_argument("--tls-cert", type=Path, metavar="PEM", help="the node's certificate: the port speaks TLS only")
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    tls.add_argument("--tls-ca", type=Path, metavar="PEM",
                     help="CA bundle: callers must present a certificate it signed (mutual TLS)")
    tls.add_argument("--forward-tls-ca", type=Path, metavar="PEM",
                     help="forward over TLS, verifying the destination's certificate (and host name) with this CA")
    tls.add_argument("--forward-tls-cert", type=Path, metavar="PEM", help="the node's client certificate for --forward")
    tls.add_argument("--forward-tls-key", type=Path, metavar="PEM", help="the private key of --forward-tls-cert")
    add_trusted_key(p)
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from ..library_warnings import route_library_warnings
    from .dicom_tls import TlsFiles, client_context, server_context
    from .node import DicomNode, check_ae_title, parse_forward

    # every option is checked before the bundle (and its model) is loaded
    forward = parse_forward(args.forward) if args.forward else None
    check_ae_title(args.ae_title)
    for title in args.allow_ae:
        check_ae_title(title, "--allow-ae")
    if args.max_dataset_mb <= 0:
        raise CxrDeviceError(f"--max-dataset-mb {args.max_dataset_mb:g}: expected a positive size")
    if args.max_associations < 1:
        raise CxrDeviceError(f"--max-associations {args.max_associations}: expected at least 1")
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_ca) if (args.tls_cert or args.tls_key or args.tls_ca) \
        else None
    forward_tls = TlsFiles(args.forward_tls_cert, args.forward_tls_key, args.forward_tls_ca) \
        if (args.forward_tls_ca or args.forward_tls_cert or args.forward_tls_key) else None
    if forward_tls is not None and forward is None:
        raise CxrDeviceError("--forward-tls-* need --forward AE@HOST:PORT (where to send the results)")
    if tls is not None:
        server_context(tls)
    if forward_tls is not None:
        client_context(forward_tls)
    out = output_dir(args.out)
    bundle = load_verified_bundle(args.bundle, args.trusted_key)
    node = DicomNode(bundle, out, args.ae_title, args.port, args.host, args.allow_ae, forward,
                     args.secondary_capture, args.max_associations, int(args.max_dataset_mb * 2**20),
                     log_stream=sys.stderr, tls=tls, forward_tls=forward_tls)
    route_library_warnings(lambda line: node.log_event("library_warning", warning=line), show_text=args_debug(args))
    port = node.start()
    print(f"cxr-device serve: listening as {terminal(node.ae_title)} on {terminal(args.host)}:{port}; results in "
          f"{terminal(out / 'results')}, status in {terminal(out / 'status.json')}; stop with Ctrl-C or SIGTERM",
          file=sys.stderr, flush=True)
    if not node.serve_until_signal():
        raise CxrDeviceError(f"the node's worker stopped unexpectedly (see {out / 'node.log'}); the received images "
                             f"are kept in {out / 'incoming'} and are processed at the next start")
    return EXIT_OK


def status_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", formatter_class=_FORMATTER,
        help="is a DICOM node running? its counts, queue and outbox (from its folder, no patient data)",
        description="Read OUT/status.json of a node folder (`cxr-device serve --out OUT`) and check that the node\n"
        "is still alive: a node killed without shutting down leaves 'running' behind, and is reported as\n"
        "'died' with the time of its last update.",
        epilog="exit code: 0 the node is running; 1 it stopped or died; 2 not a node folder",
    )
    p.add_argument("--node", required=True, type=Path, metavar="DIR", help="the node's folder (serve --out)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (text)")
    p.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    import json

    from .node import read_status

    status = read_status(args.node)
    if args.format == "json":
        print(json.dumps(status, indent=2))
    else:
        counts = status.get("counts", {})
        print(f"node {terminal(args.node)}: {status['state']} (pid {status.get('pid')}, last update "
              f"{terminal(status.get('updated'))})")
        if status.get("note"):
            print(f"  {terminal(status['note'])}")
        print(f"  {terminal(status.get('ae_title'))} on {terminal(status.get('host'))}:{status.get('port')}"
              f"{' (TLS)' if status.get('tls') else ''}; queue {status.get('queue')}, outbox {status.get('outbox')}")
        print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return EXIT_OK if status["state"] == "running" else EXIT_BAD_INPUT


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
