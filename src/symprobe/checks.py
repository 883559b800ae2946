"""Checking config values, shared by the MD and training configs: one helper per kind of value.

Every failure raises :class:`ConfigError` with one line that names the key, what it must be and the value
given. Table-driven checkers are ``functools.partial`` of these helpers, called as ``check(value, key)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

Check = Callable[[Any, str], Any]


class ConfigError(ValueError):
    """A config that cannot be used: the message names the key (or file) and the problem, on one line."""


def _bounds(minimum: float | None, above: float | None, maximum: float | None, below: float | None) -> str:
    """The range in words: 'positive', 'non-negative', or comparisons such as '≥ 1 and ≤ 8'."""
    parts = []
    if above == 0:
        parts.append("positive")
    elif above is not None:
        parts.append(f"> {above:g}")
    if minimum == 0:
        parts.append("non-negative")
    elif minimum is not None:
        parts.append(f"≥ {minimum:g}")
    if maximum is not None:
        parts.append(f"≤ {maximum:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    return " and ".join(parts)


def number(value: Any, key: str, *, integer: bool = False, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None, below: float | None = None) -> int | float:
    """``value`` as an int (``integer``) or a finite float, within the bounds (``minimum ≤ value``,
    ``above < value``, ``value ≤ maximum``, ``value < below``); booleans and strings are refused."""
    bounds = _bounds(minimum, above, maximum, below)
    adjective = bounds if bounds in ("positive", "non-negative") else ""
    kind = "integer" if integer else "number"
    wanted = " ".join(filter(None, [adjective, kind, "" if adjective else bounds]))
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value) or (integer and not float(value).is_integer()):
        article = "an" if wanted[0] in "aeiou" else "a"
        raise ConfigError(f"{key} must be {article} {wanted}, got {value!r}")
    in_range = ((minimum is None or value >= minimum) and (above is None or value > above)
                and (maximum is None or value <= maximum) and (below is None or value < below))
    if not in_range:
        raise ConfigError(f"{key} must be {bounds}, got {value!r}")
    return int(value) if integer else float(value)


def positive(value: Any, key: str, integer: bool = False) -> int | float:
    """A number > 0 (an integer ≥ 1 with ``integer``)."""
    return number(value, key, integer=integer, above=0)


def optional(check: Check) -> Check:
    """``check`` that lets None through (for values that may be left unset)."""
    return lambda value, key: None if value is None else check(value, key)


def flag(value: Any, key: str) -> bool:
    """A YAML boolean (true/false)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def choice(value: Any, key: str, options: Iterable[str]) -> str:
    """One of ``options``."""
    options = tuple(options)
    if value not in options:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, options))}, got {value!r}")
    return value


def text(value: Any, key: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    return value


def mapping(value: Any, key: str) -> dict[str, Any]:
    """A mapping (a YAML section), copied."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    return dict(value)


def check_keys(section: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse keys of ``section`` outside ``allowed``."""
    allowed = set(allowed)
    unknown = sorted(set(section) - allowed, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(sorted(allowed))})")


def check_section(section: Mapping[str, Any], checks: Mapping[str, Check], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``section`` with ``defaults`` filled in, each value passed through its check (keys named ``where.key``)."""
    section = mapping(section, where)
    check_keys(section, checks, where)
    return {key: checks[key](value, f"{where}.{key}") for key, value in {**defaults, **section}.items()}


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file; :class:`ConfigError` (one line) if it is missing or malformed."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'key saved → current' for every key of ``current`` whose value differs from ``saved``'s (JSON values;
    SHA-256 hashes cut to 12 characters), for one-line refusals to resume."""
    return [f"{key} {_short(saved.get(key))} → {_short(value)}" for key, value in current.items() if saved.get(key) != value]


def _short(value: Any) -> str:
    import json

    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
