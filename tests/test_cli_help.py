"""Every flag of the training, evaluation, solving and tree-viewing commands explains
itself in --help, preset-dependent defaults included."""

import argparse

import pytest

from train import eval as eval_cli
from train import paired, ppo, reproduce, sft, solve, tree_html
from train.presets import preset_note


class _Parsed(Exception):
    pass


def _parser_of(entry, monkeypatch) -> argparse.ArgumentParser:
    """The parser `entry` builds, caught as it starts parsing (nothing else runs)."""
    seen = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Parsed):
        entry([])
    return seen[0]


@pytest.mark.parametrize("entry", [sft.parse_args, ppo.parse_args, eval_cli.main, solve.main, tree_html.main,
                                   reproduce.parse_args, paired.main])
def test_every_flag_has_help(entry, monkeypatch):
    parser = _parser_of(entry, monkeypatch)
    silent = [a.option_strings for a in parser._actions if not (a.help or "").strip()]
    assert not silent


@pytest.mark.parametrize("module", [sft, ppo, reproduce])
def test_help_shows_every_presets_values(module, monkeypatch):
    text = " ".join(_parser_of(module.parse_args, monkeypatch).format_help().split())
    for key in module.PRESETS["default"]:
        note = preset_note(module.PRESETS, key)
        assert note and note in text, key
    assert "preset tiny: 16" in " ".join(_parser_of(sft.parse_args, monkeypatch).format_help().split())
