"""Command-line plumbing shared by every entry point (train.sft, train.ppo, train.eval,
train.solve, search.chat): numeric flag types that reject bad values while argparse
parses (so before any model is loaded), a check that an output directory can be
written before the work that fills it, and one-line errors instead of tracebacks.

It lives in model/ because imports run train -> rftt -> search -> model: every entry
point, whichever package it is in, can import it from here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

DEBUG_ENV = "RFTT_DEBUG"

# The project's input errors (ConfigError, TokenizerError, WeightsError, DataError,
# CheckpointError, ContextLengthError) all derive from ValueError; OSError covers paths
# that are missing, unreadable or unwritable. Anything else is a bug: its traceback stays.
USER_ERRORS = (ValueError, OSError)


# ------------------------------------------------------------------ numeric flag types
# argparse prints "argument --depth: must be > 0, got 0" and exits 2 when a type
# function raises ArgumentTypeError: the flag is named and nothing has run yet.

def _number(kind: Callable, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _bounded(kind: Callable, low: float, inclusive: bool, high: float | None = None) -> Callable[[str], float]:
    def parse(text: str):
        value = _number(kind, text)
        if value < low or (not inclusive and value == low) or (high is not None and value > high):
            bound = f"{'>=' if inclusive else '>'} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


positive_int = _bounded(int, 0, inclusive=False)
non_negative_int = _bounded(int, 0, inclusive=True)
positive_float = _bounded(float, 0.0, inclusive=False)
non_negative_float = _bounded(float, 0.0, inclusive=True)
unit_float = _bounded(float, 0.0, inclusive=True, high=1.0)   # a probability-like coefficient in [0, 1]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with each flag's default after its text, taken from the parser so it is
    never typed twice. A flag whose help already says "(default" (preset-dependent
    defaults, computed ones) and on/off switches are left as written. The description
    and epilog keep their line breaks (they are the module docstrings)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """--device, resolved while parsing: cuda when torch sees a GPU, else cpu."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda if available, else cpu)")


def resolve_device(parser: argparse.ArgumentParser, value: str | None) -> torch.device:
    """A --device value (None: cuda when torch sees a GPU, else cpu) as a torch.device;
    an unknown name, or cuda without a GPU, is the parser's error naming the flag."""
    try:
        device = torch.device(value or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as err:
        parser.error(f"--device {value!r}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return device


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"on an input error, show the full traceback (also: {DEBUG_ENV}=1)")


# ------------------------------------------------------------------ output directories

def check_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Creates `path` if needed and proves a file can be written in it, so a run learns
    that its output cannot be saved before the work, not after it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OSError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None
    return path


# ------------------------------------------------------------------ one-line errors

def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Runs an entry point's `main`; an input error prints `error: <message>` alone and
    exits 1. `--debug` on the command line or RFTT_DEBUG=1 shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        main(argv)
    except USER_ERRORS as e:
        if "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"error: {e}\n(run with --debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
