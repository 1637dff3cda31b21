"""The ``cxr-device`` console script: argument handling only.

Subcommands are plugins registered under the ``cxr_device.commands`` entry-point group (see
pyproject.toml); each entry point is a function that adds its subparser. This keeps the
dependency arrows one-way: ``validation`` and ``fda_submission`` register their own commands.

Exit codes: 0 success; 1 the command ran but some input was bad (counted in its output);
2 usage error or an input that cannot be used at all.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from . import __version__
from .errors import CxrDeviceError

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
cxr-device: a pneumonia-detection device on chest X-rays, from NIH ChestX-ray14 (or the
pediatric class-folder dataset) to a validated cohort, a trained and locked model, DICOM
input checks, and the FDA 510(k)-style documents - every number from a reproducible run.

Typical journeys:
  cxr-device demo                                      everything on built-in synthetic data
  cxr-device run configs/nih_densenet121.yaml          one config, every step, resumable
  cxr-device check-dicom exports/ --format junit --out qa.xml     QA of DICOM exports
  cxr-device predict --bundle runs/nih/bundle study.dcm           the locked device on a DICOM
Step by step: cohort -> eda -> train -> evaluate -> submission (see each command's --help).
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="cxr-device", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `cxr-device COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"cxr-device {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = sorted(entry_points(group="cxr_device.commands"), key=lambda ep: ep.name)
    if not commands:
        parser.error("no commands registered: install the package (`pip install -e .`) so its entry points exist")
    for command in commands:
        command.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except CxrDeviceError as err:
        print(f"cxr-device {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cxr-device {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
