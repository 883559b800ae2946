"""The CLI and config reference as reStructuredText, generated from the code (no hand copy).

* :func:`cli_rst`: every subcommand of :func:`symprobe.cli.build_parser`, its usage, description and arguments.
* :func:`config_rst` (:data:`CONFIG_PAGES`): the keys of the md, train, pretrain-data and SLURM configs, from the pydantic
  models that validate them (:data:`symprobe.schemas.CONFIGS`), and the fields of :class:`symprobe.study.Plan`
  that ``symprobe study`` sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
from collections.abc import Iterable
from typing import Any


def rst_text(text: str) -> str:
    """Plain text (help strings, comments, results) as reStructuredText: `code` becomes a literal, markup
    characters are escaped, whitespace is collapsed."""
    parts = re.split(r"`([^`]+)`", " ".join(text.split()))
    return "".join(f"``{part}``" if odd else re.sub(r"([\\*|_<>@`])", r"\\\1", part)
                   for odd, part in zip(itertools.cycle((False, True)), parts))


def _literal(text: str) -> list[str]:
    return ["::", ""] + ["   " + line for line in text.rstrip().splitlines()] + [""]


def _cell(text: Any) -> str:
    return " ".join(str(text).split()) or " "


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A list-table directive of ``rows`` under ``header``."""
    header = list(header)
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: auto", ""]
    for row in [header, *rows]:
        cells = list(row)
        lines.append(f"   * - {_cell(cells[0])}")
        lines += [f"     - {_cell(cell)}" for cell in cells[1:]]
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------
# CLI


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``symprobe`` by name."""
    from symprobe.cli import build_parser

    parser = parser or build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _argument_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = ", ".join(f"``{s}``" for s in action.option_strings) or f"``{action.metavar or action.dest}``"
        if action.option_strings and action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            name += f" ``{' '.join(metavar) if isinstance(metavar, tuple) else metavar}``"
        default = "" if action.default in (None, argparse.SUPPRESS, False) or not action.option_strings else f"``{action.default}``"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog} if action.help else ""
        rows.append((name, rst_text(help_text), default))
    return rows


def cli_rst() -> list[str]:
    """The reference of every subcommand: usage, description, arguments (from the argparse parsers)."""
    from symprobe.cli import build_parser

    parser = build_parser()
    lines = ["``symprobe``", "-" * 12, "", rst_text(parser.description), ""]
    lines += _literal(parser.format_usage()) + [rst_text(parser.epilog), ""]
    for name, sub in subcommands(parser).items():
        title = f"``symprobe {name}``"
        lines += [f".. _cli-{name}:", "", title, "-" * len(title), ""]
        if sub.description:
            lines += [rst_text(sub.description), ""]
        lines += _literal(sub.format_usage().replace("usage: ", ""))
        lines += table(("argument", "meaning", "default"), _argument_rows(sub))
        if sub.epilog:
            lines += [rst_text(sub.epilog), ""]
    return lines


# ---------------------------------------------------------------------------------------------------------
# Configs


def config_rst(name: str) -> list[str]:
    """The keys of config ``name`` (``md``, ``train`` or ``slurm``, :data:`symprobe.schemas.CONFIGS`) from the
    pydantic model that validates it: each key with what it accepts, its default and its meaning (with units),
    and a link to its JSON schema."""
    from symprobe.checks import config_keys
    from symprobe.schemas import config_model

    rows = []
    for key in config_keys(config_model(name)):
        meaning = rst_text(key.meaning)
        if key.kinds:
            meaning = f"(kind {', '.join(f'``{k}``' for k in key.kinds)}) {meaning}"
        rows.append((f"``{key.key}``", rst_text(key.accepts), f"``{key.default}``" if key.default else "", meaning))
    link = f":download:`{name}.schema.json <schemas/{name}.schema.json>`"
    lines = [f"JSON schema for editors: {link} (also ``symprobe schema {name}``).", ""]
    return lines + table(("key", "accepted values", "default", "meaning"), rows)


def md_config_rst() -> list[str]:
    """The annotated example of an MD config (:data:`symprobe.md.EXAMPLE`) and every key (:func:`config_rst`)."""
    from symprobe.md import config

    lines = ["The annotated example (:data:`symprobe.md.EXAMPLE`):", "", ".. code-block:: yaml", ""]
    lines += ["   " + line for line in config.EXAMPLE.rstrip().splitlines()] + [""]
    return lines + ["Every key :func:`~symprobe.md.validate_config` accepts (:class:`~symprobe.md.MDConfig`):", ""] + config_rst("md")


def study_plan_rst() -> list[str]:
    """The fields of :class:`symprobe.study.Plan`: what ``symprobe study`` sizes from ``--quick``/``--budget-min``."""
    from symprobe.study import Plan

    rows = [(f"``{f.name}``", getattr(f.type, "__name__", f.type),
             "" if f.default is dataclasses.MISSING else f"``{f.default!r}``") for f in dataclasses.fields(Plan)
            if f.name != "estimate_s"]
    return table(("field", "type", "default (the paper's protocol)"), rows)


CONFIG_PAGES = {"md": md_config_rst, "train": lambda: config_rst("train"), "pretrain-data": lambda: config_rst("pretrain-data"),
                "slurm": lambda: config_rst("slurm"), "study": study_plan_rst}
"""The reference text of each config, by the argument of the ``symprobe-config`` directive."""


def config_keys() -> dict[str, list[str]]:
    """Every config key by config (``md``, ``train``, ``pretrain-data``, ``slurm``, ``study``), as the reference names them."""
    from symprobe.checks import config_keys as keys_of
    from symprobe.schemas import CONFIGS, config_model
    from symprobe.study import Plan

    keys = {name: [key.key for key in keys_of(config_model(name))] for name in CONFIGS}
    return keys | {"study": [f.name for f in dataclasses.fields(Plan) if f.name != "estimate_s"]}
