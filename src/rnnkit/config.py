"""Typed configs: pydantic models that refuse unknown keys, YAML files, and dotted overrides.

    cfg = load_config(RunConfig, "configs/sine.yaml", ["train.lr=3e-4", "train.epochs=5"])

Every failure is a ConfigError naming the key (``train.lr``), what it got, and for an unknown key
the nearest valid one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from rnnkit.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's floats: 3e-4 and 1e3 are numbers, as every user expects, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?(?:\d[\d_]*)?\.\d+$|^[-+]?\d[\d_]*\.$"),
    list("-+0123456789."),
)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


class Config(pydantic.BaseModel):
    """Base of every rnnkit config: unknown keys are an error, values are checked on assignment."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


C = TypeVar("C", bound=pydantic.BaseModel)


def parse_override(text: str) -> tuple[list[str], Any]:
    """ "train.lr=3e-4" -> (["train", "lr"], 0.0003); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"override {text!r} must look like key=value with a dotted key, e.g. train.lr=3e-4")
    try:
        value = _load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error.problem})") from None
    return [p.strip() for p in parts], value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each "a.b.c=value" set; missing sections are created."""
    result = _deep_copy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: {'.'.join(keys[: depth + 1])} is a value, not a section"
                )
            node = child
        node[keys[-1]] = value
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path} is not valid YAML{where}: {getattr(error, 'problem', None) or error}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def validate(
    cls: type[C],
    data: Mapping[str, Any],
    source: str = "config",
    overrides: Iterable[str] = (),
    prefix: str = "",
) -> C:
    """cls(**data), with pydantic's errors turned into one ConfigError that names each key
    (``prefix`` + key) and where it came from: ``source``, or the override that set it."""
    try:
        return cls.model_validate(dict(data))
    except pydantic.ValidationError as error:
        lines: dict[str, list[str]] = {}
        for e in error.errors():
            key, message = _describe(cls, e, prefix)
            lines.setdefault(origin(key, source, overrides), []).append(message)
        raise ConfigError(
            "; ".join(f"{origin}: " + "; ".join(dict.fromkeys(found)) for origin, found in lines.items())
        ) from None


def origin(key: str, source: str, overrides: Iterable[str]) -> str:
    """Where the value at dotted ``key`` came from: the override that set it, else ``source``. For a
    whole section (``key`` ends with "."), the overrides inside it are named beside ``source``."""
    overrides = list(overrides)
    keys = [".".join(parse_override(text)[0]) for text in overrides]
    for k, text in zip(keys, overrides, strict=True):
        if key == k or key.startswith(k + "."):
            return f"override {text!r}"
    section = key if key.endswith(".") else key + "."
    inside = [text for k, text in zip(keys, overrides, strict=True) if k.startswith(section)]
    return f"{source} with override(s) {', '.join(map(repr, inside))}" if inside else source


def load_config(cls: type[C], path: str | Path, overrides: Iterable[str] = ()) -> C:
    """Read YAML, apply dotted overrides, validate."""
    overrides = list(overrides)
    return validate(cls, apply_overrides(read_yaml(path), overrides), str(path), overrides)


def dump_yaml(config: pydantic.BaseModel, path: str | Path) -> Path:
    """Write the resolved config (every default filled in) as YAML."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


_BRANCHES = re.compile(r"^(int|float|str|bool|none|list|dict|tuple|literal|function-\w+)(\[.*\])?$")


def _describe(cls: type[pydantic.BaseModel], error: dict, prefix: str = "") -> tuple[str, str]:
    """(the dotted key, a message naming it) for one pydantic error."""
    loc = [str(p) for p in _key_path(cls, error["loc"]) if not _BRANCHES.match(str(p))]  # no union branches
    key = prefix + ".".join(loc)
    if error["type"] == "extra_forbidden":
        valid = _fields_at(cls, error["loc"][:-1])
        near = difflib.get_close_matches(loc[-1], valid, n=1)
        nearest = prefix + ".".join([*loc[:-1], near[0]]) if near else ""
        hint = f"; did you mean {nearest!r}?" if near else f"; valid keys: {valid}"
        return key, f"unknown key {key!r}{hint}"
    if error["type"] == "missing":
        return key, f"missing key {key!r}"
    message = error["msg"].removeprefix("Value error, ")
    if not loc:
        return key, message
    got = error.get("input")
    return key, f"{key}: {message}" + ("" if isinstance(got, dict) else f" (got {got!r})")


def _key_path(cls: type[pydantic.BaseModel], loc: tuple) -> list:
    """``loc`` without the tags pydantic adds for tagged unions (data.series.lookback -> data.lookback)."""
    model: Any = cls
    path = []
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part in fields:
            model = _config_class(fields[part].annotation)
        elif isinstance(model, dict) and part in model:
            model = model[part]
            continue
        else:
            model = None
        path.append(part)
    return path


def _fields_at(cls: type[pydantic.BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the config section at ``loc`` (following nested configs and tagged unions)."""
    model: Any = cls
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part in fields:
            model = _config_class(fields[part].annotation)
        elif isinstance(model, dict) and part in model:  # a tagged union: the tag picks the class
            model = model[part]
        else:
            return []
    if isinstance(model, dict):
        return sorted(model)
    return sorted(getattr(model, "model_fields", {}))


def _config_class(annotation: Any) -> Any:
    """The config class in an annotation, or {tag: class} for a union of configs."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    members = [
        a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, pydantic.BaseModel)
    ]
    if len(members) == 1:
        return members[0]
    tags = {}
    for member in members:
        for name, field in member.model_fields.items():
            if typing.get_origin(field.annotation) is typing.Literal and name in ("name", "kind", "task"):
                tags[typing.get_args(field.annotation)[0]] = member
    return tags or None


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def describe_keys(cls: type[pydantic.BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every key of ``cls``, nested configs expanded."""
    rows = []
    for name, field in cls.model_fields.items():
        key = prefix + name
        nested = _config_class(field.annotation)
        if isinstance(nested, type) and issubclass(nested, pydantic.BaseModel):
            rows += describe_keys(nested, key + ".")
            continue
        default = "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((key, _type_name(field.annotation), default, field.description or ""))
    return rows


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    text = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", text)
    text = re.sub(r"Literal\[([^\]]*)\]", lambda m: m.group(1).replace("'", "").replace(", ", "|"), text)
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)  # drop module paths
