"""Config files and their checks, shared by the MD and training configs.

The configs are declared once as pydantic models (:mod:`symprobe.md.config`, :mod:`symprobe.training.config`);
:func:`validate` checks a mapping against one and turns pydantic's errors into :class:`ConfigError` with one
line that names the key, what it must be (:func:`accepted_values`) and the value given. :func:`config_keys`
lists every key of a config with its meaning, for the docs' reference.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

Schema = TypeVar("Schema", bound=BaseModel)

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)
"""The model config of every config section: no type coercion (``"3"`` is not 3, ``true`` is not 1, an integer
key refuses 2.0), no unknown keys, no NaN or infinity; objects (an ASE ``Atoms``, a model) where the Python API
takes them."""


class ConfigError(ValueError):
    """A config that cannot be used: the message names the key (or file) and the problem, on one line."""


class Section(BaseModel):
    """A section of a config file (a YAML mapping): strict types, unknown keys refused (:data:`STRICT`)."""

    model_config = STRICT

    def as_dict(self) -> dict[str, Any]:
        """The section as plain values, keys whose value is null left out (what checkpoints record)."""
        return self.model_dump(exclude_none=True)


def validate(schema: type[Schema], data: Any, where: str = "config", prefixed: bool = False) -> Schema:
    """``data`` checked against ``schema``; :class:`ConfigError` with one line for the first problem
    (unknown keys first, then missing keys, then values). ``where`` names the top level in messages (a file's
    name, say); with ``prefixed``, every message starts with it."""
    try:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
        try:
            return schema.model_validate(dict(data))
        except ValidationError as error:
            raise ConfigError(one_line(schema, error, where)) from None
    except ConfigError as error:
        message = str(error)
        if prefixed and not message.startswith(f"{where}: "):
            message = f"{where}: {message}"
        raise ConfigError(message) from None


def one_line(schema: type[BaseModel], error: ValidationError, where: str = "config") -> str:
    """The first problem of ``error`` (from validating against ``schema``) as one line naming the key."""
    problems = error.errors(include_url=False)
    for kind in ("extra_forbidden", "missing"):
        found = [p for p in problems if p["type"] == kind]
        if found:
            parent = found[0]["loc"][:-1]
            names = [str(p["loc"][-1]) for p in found if p["loc"][:-1] == parent]
            place = _locate(schema, parent, where)
            if kind == "missing":
                meanings = [f"; {n}: {place.model.model_fields[n].description}" for n in names
                            if len(names) == 1 and place.model and place.model.model_fields[n].description]
                return f"{place.label}: missing required key(s) {', '.join(names)}{''.join(meanings)}"
            allowed = sorted(place.model.model_fields) if place.model else []
            return f"{place.label}: unknown key(s) {', '.join(names)} (allowed: {', '.join(allowed)})"
    problem = problems[0]
    place = _locate(schema, problem["loc"], where)
    value, kind = problem["input"], problem["type"]
    if kind == "value_error":
        return str(problem["ctx"]["error"])
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = ", ".join(place.tags)
        if kind == "union_tag_not_found":
            return f"{place.key} must be a name or a mapping with 'kind' (one of {tags}), got {value!r}"
        return f"{place.key}: unknown kind {problem['ctx']['tag']!r} (one of {tags})"
    if place.field is None:
        return f"{place.key}: {problem['msg'][0].lower()}{problem['msg'][1:]}, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{place.key} must be {_bounds(place.field)}, got {value!r}"
    return f"{place.key} must be {accepted_values(place.field)}, got {value!r}"


class _Place(typing.NamedTuple):
    """Where an error points: the dotted ``key``, the ``label`` of its section in messages, the section's
    ``model`` (when the place is a section), the leaf ``field`` and the kinds of a tagged union."""

    key: str
    label: str
    model: type[BaseModel] | None
    field: FieldInfo | None
    tags: tuple[str, ...]


def _locate(schema: type[BaseModel], loc: tuple[Any, ...], where: str) -> _Place:
    """Follow ``loc`` (pydantic's error location) through ``schema``'s fields, union tags and list items."""
    key, label, model, field, tags = "", where, schema, None, ()
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            item = typing.get_args(_without_none(field.annotation))[0] if field is not None else Any
            field, model = FieldInfo.from_annotation(item), None
        elif model is not None and part in model.model_fields:
            key = f"{key}.{part}" if key else str(part)
            field = model.model_fields[part]
            model, tags = _section_model(field.annotation), tuple(_kinds(field.annotation))
            label = key
        elif part in tags:
            model, label = _kinds(field.annotation)[part], f"{key} ({part})"
    return _Place(key or where, label, model, field, tags)


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None`` (other unions as they are)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _section_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _without_none(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _kinds(annotation: Any) -> dict[str, type[BaseModel]]:
    """The members of a union of sections tagged by their ``kind`` literal, by kind."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    return {typing.get_args(m.model_fields["kind"].annotation)[0]: m for m in members
            if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields}


def _bounds(field: FieldInfo) -> str:
    """The range of a number field in words: 'positive', 'non-negative', or comparisons such as '≥ 1 and ≤ 8'."""
    parts = []
    for limit in field.metadata:
        if isinstance(limit, annotated_types.Gt):
            parts.append("positive" if limit.gt == 0 else f"> {limit.gt:g}")
        elif isinstance(limit, annotated_types.Ge):
            parts.append("non-negative" if limit.ge == 0 else f"≥ {limit.ge:g}")
        elif isinstance(limit, annotated_types.Le):
            parts.append(f"≤ {limit.le:g}")
        elif isinstance(limit, annotated_types.Lt):
            parts.append(f"< {limit.lt:g}")
    return " and ".join(parts)


def accepted_values(field: FieldInfo) -> str:
    """What a config field accepts, in words ('a positive integer', 'one of cosine, plateau', …): the wording
    of the error messages and of the docs' config reference."""
    annotation = _without_none(field.annotation)
    optional = ", or null" if annotation is not field.annotation else ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args)) + optional
    if annotation is bool:
        return "true or false" + optional
    if annotation in (int, float):
        bounds = _bounds(field)
        kind = "integer" if annotation is int else "number"
        if bounds in ("positive", "non-negative"):
            wanted = f"{bounds} {kind}"
        else:
            wanted = f"{kind} {bounds}".strip()
        return ("an " if wanted[0] in "aeiou" else "a ") + wanted + optional
    if annotation is str:
        return ("a non-empty string" if any(isinstance(m, annotated_types.MinLen) for m in field.metadata) else "a string") + optional
    if annotation is Path:
        return "a path" + optional
    if origin is list:
        non_empty = "non-empty " if any(isinstance(m, annotated_types.MinLen) for m in field.metadata) else ""
        return f"a {non_empty}list, each " + accepted_values(FieldInfo.from_annotation(args[0])) + optional
    if _kinds(field.annotation):
        return "a name or a mapping with kind " + ", ".join(_kinds(field.annotation)) + optional
    if _section_model(annotation) is not None:
        return "a mapping" + optional
    if str in args:
        return "a string" + optional  # the other members are objects of the Python API
    return "a " + " or ".join(getattr(a, "__name__", str(a)) for a in args or (annotation,)) + optional


class ConfigKey(typing.NamedTuple):
    """One key of a config as the reference lists it: the dotted ``key``, what it ``accepts`` in words, its
    ``default`` ("required" when it has none), its ``meaning`` (with units) and the section ``kinds`` it belongs to
    (empty: every kind)."""

    key: str
    accepts: str
    default: str
    meaning: str
    kinds: tuple[str, ...] = ()


def config_keys(schema: type[BaseModel], prefix: str = "") -> list[ConfigKey]:
    """Every key of ``schema`` with its sections' keys (``output.log_stride``; a tagged section's keys once each,
    with the kinds that take them), in declaration order."""
    keys = []
    for name, field in schema.model_fields.items():
        key = prefix + name
        keys.append(ConfigKey(key, accepted_values(field), _default(field), field.description or ""))
        kinds, section = _kinds(field.annotation), _section_model(field.annotation)
        if kinds:
            members: dict[str, list[tuple[str, FieldInfo]]] = {}
            for kind, member in kinds.items():
                for sub, sub_field in member.model_fields.items():
                    members.setdefault(sub, []).append((kind, sub_field))
            for sub, found in members.items():
                sub_field = found[0][1]
                used = () if sub == "kind" else tuple(kind for kind, _ in found)
                accepts = "one of " + ", ".join(kinds) if sub == "kind" else accepted_values(sub_field)
                keys.append(ConfigKey(f"{key}.{sub}", accepts, "required" if sub == "kind" else _default(sub_field),
                                      sub_field.description or "", used))
        elif section is not None:
            keys += config_keys(section, f"{key}.")
    return keys


def _default(field: FieldInfo) -> str:
    """A field's default as YAML would write it ('required' without one, '' when a section builds it)."""
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return ""
    value = field.default
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    return str(value) if isinstance(value, (str, Path)) else json.dumps(value, ensure_ascii=False)


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
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
