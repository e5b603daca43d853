"""--preset: a named set of defaults for a training script's flags. A flag left unset
takes the chosen preset's value; --help shows every preset's value, generated from the
same dictionary so the two never disagree."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Callable


def preset_note(presets: dict[str, dict], key: str) -> str:
    """'(default: 48; preset tiny: 16)' for the flag whose destination is `key`: the
    "default" preset's value, then each other preset's where it differs."""
    default = presets["default"].get(key)
    parts = [] if default is None else [f"default: {default}"]
    parts += [f"preset {name}: {values[key]}" for name, values in presets.items()
              if name != "default" and values.get(key) != default]
    return f"({'; '.join(parts)})" if parts else ""


def apply_preset(args: argparse.Namespace, presets: dict[str, dict]) -> None:
    """Fills every flag left unset (None) with the value of the preset `args.preset`."""
    for key, value in presets[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def add_preset_flag(parser: argparse.ArgumentParser, presets: dict[str, dict]) -> Callable[[str], str]:
    """Adds --preset; returns preset_note bound to `presets`, for the help text of the
    flags a preset sets: preset("epochs") -> "(default: 3; preset tiny: 2)"."""
    parser.add_argument("--preset", choices=sorted(presets), default="default",
                        help="defaults for the flags that name a preset below")
    return partial(preset_note, presets)
