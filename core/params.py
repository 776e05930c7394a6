"""Typed parameters for plugins and config sections: dataclasses checked against plain mappings."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .errors import ConfigError, did_you_mean

_MISSING = dataclasses.MISSING


def param(default: Any = _MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with a help text shown by 'minecli plugins show'."""
    meta = {"help": help}
    if default is _MISSING and "default_factory" not in kwargs:
        return dataclasses.field(metadata=meta, **kwargs)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kwargs)
    return dataclasses.field(default=default, metadata=meta, **kwargs)


@dataclasses.dataclass(frozen=True)
class NoParams:
    """Parameters of a plugin that takes none."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ValueError naming `where`."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.strip().lower() in ("null", "none", "~") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{where} must be {_type_name(tp)}, not {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        hint = did_you_mean(str(value), [str(c) for c in choices])
        raise ValueError(f"{where} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}.{hint}")
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            value = [v.strip() for v in text.split(",") if v.strip()] if text else []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be {_type_name(tp)}, not {value!r}")
        items = [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, not {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{where} must be true or false, not {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, not {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                raise ValueError(f"{where} must be an integer, not {value!r}") from None
            if as_float.is_integer():
                return int(as_float)
        raise ValueError(f"{where} must be an integer, not {value!r}")
    if tp is float:
        # PyYAML reads 1e-4 as a string, so numbers in strings are accepted here.
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, not {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{where} must be a number, not {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{where} must be a string, not {value!r}")
    if dataclasses.is_dataclass(tp):
        return parse_params(tp, value, where)
    return value


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The dataclass fields of cls with their resolved type hints."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def parse_params(cls: type, data: Any, where: str, problems: list[str] | None = None) -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and bad values are ConfigErrors.

    When `problems` is given, errors are appended to it (and defaults used) instead of raised, so a
    caller can report every problem of a config at once.
    """
    own = problems is None
    problems = [] if own else problems
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where} must be a mapping of keys to values, not {data!r}")
        data = {}
    known = fields_of(cls)
    names = [f.name for f, _ in known]
    for key in data:
        if key not in names:
            hint = did_you_mean(str(key), names)
            valid = f" Valid keys: {', '.join(names)}." if not hint and names else ""
            full = f"{where}.{key}" if where else str(key)
            problems.append(f"unknown key '{full}'.{hint}{valid}")
    kwargs: dict[str, Any] = {}
    for field, tp in known:
        key = f"{where}.{field.name}" if where else field.name
        if field.name in data:
            try:
                kwargs[field.name] = coerce(data[field.name], tp, key)
            except ValueError as exc:
                problems.append(str(exc))
            except ConfigError as exc:
                problems.extend(exc.problems)
        elif field.default is _MISSING and field.default_factory is _MISSING:  # type: ignore[misc]
            problems.append(f"missing required key '{key}'")
    if own and problems:
        raise ConfigError(problems)
    try:
        obj = cls(**kwargs)
    except TypeError:
        # Only reachable after problems were recorded: fall back to what can be built.
        if own:
            raise
        return None
    except ValueError as exc:
        if own:
            raise ConfigError(f"{where}: {exc}") from None
        problems.append(f"{where}: {exc}")
        return None
    return obj


def describe_params(cls: type) -> list[dict[str, Any]]:
    """Name, type, default and help of each parameter, for listings."""
    out = []
    for field, tp in fields_of(cls):
        if field.default is not _MISSING:
            default: Any = field.default
        elif field.default_factory is not _MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        out.append({"name": field.name, "type": _type_name(tp), "default": default,
                    "help": field.metadata.get("help", "")})
    return out


def params_to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a params dataclass."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj or {})
