"""The CLI and config reference as reStructuredText, generated from the code (no hand copy).

* :func:`cli_rst`: every subcommand of :func:`symprobe.cli.build_parser`, its usage, description and arguments.
* :func:`md_config_rst`, :func:`train_config_rst`, :func:`study_plan_rst`: the keys that
  :mod:`symprobe.md.config` and :mod:`symprobe.training.config` accept, with what the code checks and the
  defaults, and the fields of :class:`symprobe.study.Plan` that ``symprobe study`` sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
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


def describe_check(check: Callable[..., Any]) -> str:
    """What a :mod:`symprobe.checks` checker accepts, in words, read from the checker itself."""
    from symprobe import checks

    if isinstance(check, functools.partial):
        keywords = dict(check.keywords)
        if check.func is checks.choice:
            return "one of " + ", ".join(f"``{o}``" for o in keywords["options"])
        if check.func is checks.number:
            kind = "integer" if keywords.pop("integer", False) else "number"
            bounds = checks._bounds(*(keywords.get(k) for k in ("minimum", "above", "maximum", "below")))
            return f"{bounds} {kind}" if bounds in ("positive", "non-negative") else f"{kind} {bounds}".strip()
    if check is checks.positive:
        return "number > 0"
    if check is checks.text:
        return "non-empty string"
    if check is checks.flag:
        return "true or false"
    closure = [cell.cell_contents for cell in (getattr(check, "__closure__", None) or ())]
    if closure and callable(closure[0]) and check.__qualname__.startswith("optional"):
        return describe_check(closure[0]) + ", or null"
    doc = inspect.getsource(check).strip() if check.__name__ == "<lambda>" else (check.__doc__ or "")
    return "list of integers ≥ 1" if "_list" in doc else doc.split("\n")[0]


def _section_rows(section: str, checks: Mapping[str, Callable[..., Any]], defaults: Mapping[str, Any],
                  required: Iterable[str] = ()) -> list[tuple[str, str, str]]:
    required = set(required)
    return [(f"``{section}.{key}``", describe_check(checks[key]),
             "required" if key in required else f"``{defaults.get(key)!r}``") for key in checks]


def train_config_rst() -> list[str]:
    """The keys of a training config (:mod:`symprobe.training.config`), each with its check and default."""
    from symprobe.models.pet import default_hypers
    from symprobe.training import config

    lines = ["Top-level keys: " + ", ".join(f"``{k}``" for k in sorted(config.TOP_KEYS)) + ".", ""]
    rows = _section_rows("data", config._DATA_CHECKS, config.DATA_KEYS, ("path", "train", "val", "test"))
    rows += _section_rows("model", config._MODEL_CHECKS, default_hypers())
    rows += _section_rows("training", config._TRAINING_CHECKS, config.TRAINING_KEYS)
    return lines + table(("key", "accepted values", "default"), rows)


def example_comments(example: str) -> dict[str, str]:
    """The comment of each top-level key of an annotated YAML example (continuation comment lines joined)."""
    comments: dict[str, str] = {}
    key = None
    for line in example.splitlines():
        code, _, comment = line.partition("#")
        if code[:1].strip():
            key = code.split(":")[0].strip()
            comments[key] = comment.strip()
        elif key and not code.strip() and comment:
            comments[key] += " " + comment.strip()
    return comments


_MD_MEANINGS = {"time_ps": "the run length in ps, instead of steps", "output": "the output.* keys below",
                            "steps": "the run length in (inner) time steps, instead of time_ps",
                            "seed": "seed of the start velocities, thermostats and random rotations (replica k: seed + k)"}


def md_config_rst() -> list[str]:
    """The keys of an MD config (:mod:`symprobe.md.config`): the annotated example and every key with what it
    means (the example's comment), the section kinds it belongs to, and its default."""
    from symprobe.md import config

    lines = ["The annotated example (:data:`symprobe.md.EXAMPLE`):", "", ".. code-block:: yaml", ""]
    lines += ["   " + line for line in config.EXAMPLE.rstrip().splitlines()] + [""]
    comments = example_comments(config.EXAMPLE)
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                for f in dataclasses.fields(config.MDConfig)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    required = {"structure", "model", "timestep_fs"}
    rows = []
    for key in sorted(config._TOP_KEYS):
        default = "required" if key in required else "one of steps, time_ps" if key in ("steps", "time_ps") else \
            f"``{defaults[key]!r}``" if key in defaults else ""
        rows.append((f"``{key}``", rst_text(_MD_MEANINGS.get(key) or comments[key]), default))
    for section, kinds in (("symmetrizer", config._SYMMETRIZER_KEYS), ("ensemble", config._ENSEMBLE_KEYS)):
        rows.append((f"``{section}.kind``", "one of " + ", ".join(f"``{k}``" for k in kinds), f"``{defaults[section]['kind']!r}``"))
        for key in sorted({k for keys in kinds.values() for k in keys} - {"kind"}):
            used = [kind for kind, keys in kinds.items() if key in keys]
            rows.append((f"``{section}.{key}``", "with kind " + ", ".join(f"``{k}``" for k in used), ""))
    output = {f.name: f.default for f in dataclasses.fields(config.OutputConfig)}
    for key in sorted(config._OUTPUT_KEYS):
        default = output.get(key, dataclasses.MISSING)
        meaning = "time steps between writes (a multiple of n_inner for MTS)" if key.endswith("_stride") else ""
        rows.append((f"``output.{key}``", meaning, "``'md'``" if key == "directory" else f"``{default!r}``"))
    return lines + ["Every key :func:`~symprobe.md.validate_config` accepts:", ""] + table(("key", "meaning", "default"), rows)


def study_plan_rst() -> list[str]:
    """The fields of :class:`symprobe.study.Plan`: what ``symprobe study`` sizes from ``--quick``/``--budget-min``."""
    from symprobe.study import Plan

    rows = [(f"``{f.name}``", getattr(f.type, "__name__", f.type),
             "" if f.default is dataclasses.MISSING else f"``{f.default!r}``") for f in dataclasses.fields(Plan)
            if f.name != "estimate_s"]
    return table(("field", "type", "default (the paper's protocol)"), rows)


def config_keys() -> dict[str, list[str]]:
    """Every config key by config (``md``, ``train``, ``study``), as the reference names them."""
    from symprobe.md import config as md
    from symprobe.models.pet import default_hypers
    from symprobe.study import Plan
    from symprobe.training import config as train

    md_keys = sorted(md._TOP_KEYS) + [f"output.{k}" for k in md._OUTPUT_KEYS]
    for section, kinds in (("symmetrizer", md._SYMMETRIZER_KEYS), ("ensemble", md._ENSEMBLE_KEYS)):
        md_keys += sorted({f"{section}.{k}" for keys in kinds.values() for k in keys})
    train_keys = sorted(train.TOP_KEYS) + [f"data.{k}" for k in train.DATA_KEYS] + [f"training.{k}" for k in train.TRAINING_KEYS]
    train_keys += [f"model.{k}" for k in default_hypers()]
    return {"md": md_keys, "train": train_keys, "study": [f.name for f in dataclasses.fields(Plan) if f.name != "estimate_s"]}
