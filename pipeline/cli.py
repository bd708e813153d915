"""The ``liverburden`` command line: one subcommand per stage.

Each subcommand lives in its stage's package as a module with
``add_arguments(parser)`` and ``run(args) -> int``; this module only parses,
dispatches and turns errors into exit codes:

* 0: success;
* 2: bad input (:class:`pipeline.errors.InputError`) or bad usage: one line on
  stderr, no traceback, no output left behind;
* 1: an internal error (a bug): one line, and the traceback with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from pipeline import __version__
from pipeline.errors import InputError

#: name -> (module with add_arguments/run, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": (
        "pipeline.phantom.command",
        "generate a synthetic CT phantom cohort with exact labels",
    ),
    "segment": (
        "pipeline.segment.command",
        "segment liver and tumour in a CT with a MONAI model bundle",
    ),
    "measure": (
        "pipeline.measure.command",
        "measure liver, tumour burden and each lesion of one scan",
    ),
    "respond": (
        "pipeline.response.command",
        "match lesions over time and classify response (RECIST 1.1, mRECIST, Choi, volumetric)",
    ),
    "evaluate": (
        "pipeline.segment.evaluate_command",
        "compare predicted label maps with reference label maps",
    ),
    "train": ("pipeline.segment.train_command", "train a liver and tumour model bundle"),
    "report": ("pipeline.report.command", "write a subject's self-contained HTML report"),
    "cohort": (
        "pipeline.report.cohort_command",
        "collect subjects into cohort.csv and cohort figures",
    ),
    "dicom-seg": (
        "pipeline.report.dicom_seg_command",
        "write a label map as DICOM SEG referencing its source series",
    ),
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    group.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", help="print debugging messages")


def _chosen_command(argv: Sequence[str]) -> str | None:
    for item in argv:
        if item in COMMANDS:
            return item
        if not item.startswith("-"):
            return None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``command``'s module is imported (keeps start-up fast)."""
    parser = argparse.ArgumentParser(
        prog="liverburden",
        description="Liver tumour burden and treatment response from abdominal CT.",
    )
    parser.add_argument("--version", action="version", version=f"liverburden {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary)
        if name == command:
            module = importlib.import_module(module_name)
            if module.__doc__:
                sub.description = module.__doc__.strip()
                sub.formatter_class = argparse.RawDescriptionHelpFormatter
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
        _add_common(sub)
    return parser


def _configure_logging(command: str, quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"liverburden {command}: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(level)


class _Terminated(BaseException):
    """SIGTERM (a scheduler cancelling or timing out a job) as an exception, so
    that temporary outputs are cleaned up on the way out."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``liverburden`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen_command(argv)
    parser = build_parser(command)
    if command is None:
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # prints usage and exits 2 for unknown commands
        return 2
    args = parser.parse_args(argv)
    _configure_logging(command, args.quiet, args.verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return int(args._run(args) or 0)
    except _Terminated:
        print(f"liverburden {command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except InputError as error:
        if args.debug:
            raise
        print(f"liverburden {command}: error: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"liverburden {command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print(
            f"liverburden {command}: error: out of memory; "
            "try a smaller image or a machine with more memory",
            file=sys.stderr,
        )
        return 2
    except Exception as error:  # a bug: say so in one line, traceback on request
        if args.debug:
            raise
        text = " ".join(str(error).split())[:300]
        print(
            f"liverburden {command}: internal error: {type(error).__name__}: {text} "
            "(a bug: rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
