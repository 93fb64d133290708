"""Command-line options generated from a pydantic options model, so that each default,
bound and help text is stated once, on the model.

`@options_from(Model)` gives the command one option per field of `Model` (a field's
`json_schema_extra` may set `cli: False` to leave it out, or `flags` to name its flags),
and calls the command with `options=Model(...)`. Bounds become Click bounds, so a value
out of range is a usage error like any other; anything else the model refuses is a
one-line ConfigError naming the flag.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import annotated_types
import typer
from pydantic import BaseModel

from tunelab.config import validate_options


def flag_of(name: str, field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("flags", [f"--{name.replace('_', '-')}"])[0])


def _cli_fields(model: type[BaseModel]) -> dict[str, Any]:
    shown = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("cli", True):
            shown[name] = field
    return shown


def _bounds(field: Any) -> dict[str, float]:
    bounds: dict[str, float] = {}
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min"] = item.ge
        elif isinstance(item, annotated_types.Le):
            bounds["max"] = item.le
    return bounds


def _plain_type(annotation: Any) -> Any:
    """`X | None` -> X: Click takes None as "not given"."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def parameter(name: str, field: Any) -> inspect.Parameter:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    flags = [str(f) for f in extra.get("flags", [])]
    annotation = _plain_type(field.annotation)
    default = field.get_default(call_default_factory=True)
    if annotation is bool and default is False and not flags:
        flags = [flag_of(name, field)]  # a plain switch: no --no-... for what is off already
    option = typer.Option(*flags, help=field.description, show_default=True,
                          envvar=extra.get("envvar"), **_bounds(field))
    hint = annotation if default is not None else annotation | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                             annotation=Annotated[hint, option], default=default)


def build(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    def flag(name: str) -> str:
        field = model.model_fields.get(name.split(".")[0])
        return flag_of(name, field) if field is not None else name

    return validate_options(model, values, flag)


def options_from(model: type[BaseModel]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.name != "options"]
        fields = _cli_fields(model)

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in fields}
            return command(options=build(model, values), **kwargs)

        params = own + [parameter(name, field) for name, field in fields.items()]
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        del run.__wrapped__  # Typer must read the new signature, not the command's
        return run

    return wrap
