"""The ``cxr-device`` console script: argument handling only.

Subcommands are plugins registered under the ``cxr_device.commands`` entry-point group (see
pyproject.toml); each entry point is a function that adds its subparser. This keeps the
dependency arrows one-way: ``validation`` and ``fda_submission`` register their own commands.

Exit codes: 0 success; 1 the command ran but some input was bad or left out (counted and
listed in its output); 2 usage error or an input that cannot be used at all; 70 an internal
error (a bug: one line asks for a report; ``--debug`` shows the traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import entry_points

from . import __version__
from .errors import CxrDeviceError

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130

DESCRIPTION = """\
cxr-device: a pneumonia-detection device on chest X-rays, from NIH ChestX-ray14 (or the
pediatric class-folder dataset) to a validated cohort, a trained, calibrated and locked model,
DICOM input checks, standalone assessment on unseen data, a DICOM node for the hospital, and the
FDA 510(k)-style documents - every number from a reproducible run.

Typical journeys:
  cxr-device demo                                      everything on built-in synthetic data
  cxr-device run configs/pediatric_reference.yaml      one config, every step, resumable
  cxr-device assess --bundle RUN/bundle --name site-a --dicom exports/ --labels labels.csv
                                                       the locked device on data it has never seen
  cxr-device compare --baseline OLD/bundle --candidate NEW/bundle --name site-a --dicom exports/ \\
      --labels labels.csv --profile my_device.yaml --run NEW   a retrained device against the released one
  cxr-device check-dicom exports/ --format junit --out qa.xml     QA of DICOM exports
  cxr-device sign --bundle RUN/bundle --key keys/signing_key.pem  sign the locked device
  cxr-device predict --bundle RUN/bundle --trusted-key pub.pem study.dcm   the device on a DICOM
  cxr-device serve --bundle RUN/bundle --port 11112 --out node/   the device as a DICOM node
Step by step: cohort -> eda -> train -> evaluate -> assess -> submission (see each --help).
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="cxr-device", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `cxr-device COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"cxr-device {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an internal error (also: CXR_DEVICE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = sorted(entry_points(group="cxr_device.commands"), key=lambda ep: ep.name)
    if not commands:
        parser.error("no commands registered: install the package (`pip install -e .`) so its entry points exist")
    for command in commands:
        command.load()(sub)
    for subparser in sub.choices.values():  # `cxr-device COMMAND ... --debug` works too
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the Python traceback of an internal error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command and return its exit code. No traceback reaches
    the user unless ``--debug``: bad input is one message naming the file and what to do, an
    internal error one line asking for a bug report."""
    from pydantic import ValidationError

    from .safe_text import terminal
    from .validated import describe_errors

    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("CXR_DEVICE_DEBUG", "") not in ("", "0")

    def fail(message: str, code: int) -> int:
        print(f"cxr-device {args.command}: {terminal(message, multiline=True)}", file=sys.stderr)
        return code

    from .library_warnings import route_library_warnings

    # warnings of pydicom, highdicom and pynetdicom quote header values: reported without their text
    route_library_warnings(lambda line: print(f"cxr-device {args.command}: note: {terminal(line)}", file=sys.stderr),
                           show_text=debug)
    try:
        return int(args.handler(args) or EXIT_OK)
    except CxrDeviceError as err:
        return fail(f"error: {err}", EXIT_USAGE)
    except ValidationError as err:  # a setting built from flags that does not fit its type or range
        return fail(f"error: {describe_errors(err, as_flags=True)}", EXIT_USAGE)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`)
        sys.stderr.close()
        return EXIT_OK
    except OSError as err:  # a path the system refused (named): the user's to fix; unnamed: a bug
        if debug:
            traceback.print_exc()
        if err.filename is None:
            return _internal(fail, err)
        return fail(f"error: {err.filename}: {err.strerror or err} (check the path and its permissions)", EXIT_USAGE)
    except Exception as err:  # noqa: BLE001 - the last line of defence: no traceback for users
        if debug:
            traceback.print_exc()
        return _internal(fail, err)


def _internal(fail, err: BaseException) -> int:
    first = (str(err).splitlines() or [""])[0][:200]
    return fail(f"internal error ({type(err).__name__}: {first}); this is a bug in cxr-device {__version__}: "
                "please report it to the maintainers with the output of the same command run with --debug",
                EXIT_INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
