"""Declared types and ranges of config keys, and the one checker every config section goes through.

The ``*Config`` dataclasses of each config group are the schema: their type hints, written with
the aliases below (``PositiveInt``, ``Fraction``, ``MemorySize``, ``Literal[...]`` for choices),
say what each key accepts. :func:`from_mapping` checks a mapping against such a dataclass with
pydantic in *strict* mode, so nothing is guessed: ``"no"``, ``"off"``, ``"false"`` or ``1`` are
not booleans, ``"3"`` is not an integer, ``True`` is not a number. An integer is accepted where a
float is expected. Every failure becomes one :class:`~astropipe.errors.ConfigError` line naming
the key, the value found and what is expected.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError

from astropipe.errors import ConfigError

__all__ = [
    "PositiveInt",
    "NonNegativeInt",
    "PositiveFloat",
    "NonNegativeFloat",
    "Fraction",
    "RightAscension",
    "Declination",
    "MemorySize",
    "Pair",
    "PositivePair",
    "NonEmptyList",
    "from_mapping",
    "schema_dataclasses",
]

T = TypeVar("T")


def _memory_size(text: str) -> str:
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(text)
    except (ValueError, TypeError) as exc:
        raise ValueError("a positive memory size such as 512MB or 4GB") from exc
    if not n > 0:
        raise ValueError("a positive memory size such as 512MB or 4GB")
    return text


def _fraction(x: float) -> float:
    if not 0 <= x <= 1:
        raise ValueError("a fraction in [0, 1]")
    return x


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A fraction of rows or pixels, in [0, 1].
Fraction = Annotated[float, AfterValidator(_fraction)]
#: Degrees, [0, 360): 360 must be written as 0.
RightAscension = Annotated[float, Field(ge=0, lt=360)]
#: Degrees, [-90, 90].
Declination = Annotated[float, Field(ge=-90, le=90)]
#: A size in bytes as dask parses it: "512MB", "4GB", "2GiB" (MB = 10**6 bytes).
MemorySize = Annotated[str, AfterValidator(_memory_size)]
#: ``[min, max]`` (ordering is checked by the section that knows whether min == max is allowed).
Pair = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)
]
#: Two positive numbers, e.g. connect and read timeouts in seconds.
PositivePair = Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]
NonEmptyList = Annotated[list[str], Field(min_length=1)]

#: Unknown keys are errors (a typo must not fall back to a default).
_STRICT_CONFIG = ConfigDict(extra="forbid")


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` from a type hint."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _children(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return list(typing.get_type_hints(tp, include_extras=True).values())
    origin = typing.get_origin(tp)
    if origin in (list, tuple, dict):
        return list(typing.get_args(tp))
    return []


def schema_dataclasses(cls: type) -> list[type]:
    """Every dataclass reachable from ``cls`` through its field types (``cls`` first)."""
    seen: list[type] = []
    stack = [cls]
    while stack:
        tp = _unwrap(stack.pop())
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp not in seen:
            seen.append(tp)
        stack.extend(c for c in _children(tp) if _unwrap(c) not in seen)
    return seen


@functools.cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    for dc in schema_dataclasses(cls):
        # stdlib dataclasses take pydantic's config from this attribute; set it on every nested
        # one, so a dataclass added later to any group is checked the same way.
        if "__pydantic_config__" not in vars(dc):
            dc.__pydantic_config__ = _STRICT_CONFIG  # type: ignore[attr-defined]
    return TypeAdapter(cls)


def _type_at(cls: type, loc: tuple[Any, ...]) -> Any:
    """The type hint reached from dataclass ``cls`` along a pydantic error location."""
    tp: Any = cls
    for part in loc:
        base = _unwrap(tp)
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            hints = typing.get_type_hints(base, include_extras=True)
            if part not in hints:
                return None
            tp = hints[part]
        elif typing.get_origin(base) in (list, tuple):
            tp = typing.get_args(base)[0] if typing.get_args(base) else Any
        elif typing.get_origin(base) is dict:
            tp = typing.get_args(base)[1]
        else:
            return None
    return tp


def _key(where: str, loc: tuple[Any, ...]) -> str:
    key = where
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


_EXPECTED = {
    "bool_type": "true or false (unquoted YAML; 'no', 'off', 'yes', 'false' are strings)",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "dataclass_type": "a mapping",
    "dataclass_exact_type": "a mapping",
}


def _expected(err: Mapping[str, Any], cls: type) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, name = bounds[kind]
        return f"a number {op} {ctx.get(name)}"
    if kind == "too_short":
        return f"a list of at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"a list of at most {ctx.get('max_length')} item(s)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    msg = str(err["msg"])
    return msg.removeprefix("Input should be ").removeprefix("Value error, ")


def _message(exc: ValidationError, cls: type, where: str) -> str:
    errors = exc.errors()
    # Unknown keys first: a typo explains the other errors around it.
    unknown = [e for e in errors if e["type"] in ("unexpected_keyword_argument", "extra_forbidden")]
    if unknown:
        parent = tuple(unknown[0]["loc"][:-1])
        names = sorted(str(e["loc"][-1]) for e in unknown if tuple(e["loc"][:-1]) == parent)
        owner = _unwrap(_type_at(cls, parent))
        valid = (
            sorted(f.name for f in dataclasses.fields(owner) if f.init)
            if isinstance(owner, type) and dataclasses.is_dataclass(owner)
            else []
        )
        return (
            f"{_key(where, parent) or cls.__name__}: unknown key(s) {names}; "
            f"valid keys are {valid}."
        )
    err = errors[0]
    loc = tuple(err["loc"])
    key = _key(where, loc) or cls.__name__
    if err["type"] in ("missing", "missing_argument"):
        return f"{key}: required key missing; add it to conf/."
    if err["type"] in ("literal_error", "enum"):
        hint = _type_at(cls, loc)
        while typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
        options: list[Any] = list(typing.get_args(_unwrap(hint)))
        if type(None) in typing.get_args(hint):
            options.append(None)
        shown = ", ".join("null" if o is None else repr(o) for o in options)
        return f"{key}: {err['input']!r} is not a valid option; choose one of [{shown}]."
    return f"{key}: {err['input']!r} is not valid; expected {_expected(err, cls)}."


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not a config value")


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from a config mapping, checking every key's type and range.

    Parameters
    ----------
    cls
        A config dataclass; nested dataclasses, lists and dicts of them are checked too.
    data
        The section, as composed by Hydra or read from params.yaml.
    where
        Dotted key of the section (``"zarr"``), used in messages.

    Raises
    ------
    ConfigError
        One line naming the first bad key, the value found and what is expected; for an
        unknown key, the valid keys.
    TypeError
        When ``cls`` is not a dataclass.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, found {data!r}.")
    try:
        # JSON mode is pydantic's strict mode that still builds nested dataclasses from
        # mappings; the values are plain YAML scalars, lists and mappings anyway.
        text = json.dumps(dict(data), default=_json_default)
        return _adapter(cls).validate_json(text, strict=True)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise ConfigError(_message(exc, cls, where)) from None
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}.") from None
