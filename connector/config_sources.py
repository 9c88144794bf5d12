"""The sources of settings, each read into a :class:`RawLayer` of unvalidated values.

A connection string (:func:`connection_layer`), the environment (:func:`read_environment`) and a
TOML file (:func:`read_toml`). Each source accepts keys through
:func:`connector.config_keys.accept_key`, so a key is spelt, checked and kept secret the same way
wherever it comes from. :func:`merge_layers` applies the precedence; :mod:`connector.config` says
which source comes first and validates the result.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.config_keys import (
    accept_key,
    parse_connection_string,
    suggest_key,
    unknown_key_warning,
)
from connector.errors import ConfigError
from connector.redact import redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "ZOHO_CRM_"
ENV_CONNECTION = "ZOHO_CRM_CONNECTION"
ENV_TUNING_PREFIX = "ZOHO_CRM_TUNING_"
ENV_OUTPUT_PREFIX = "ZOHO_CRM_OUTPUT_"
# Environment variables with our prefix that are not connection keys.
_ENV_NOT_KEYS = frozenset({"CONNECTION", "TOKEN_CACHE_DIR"})


@dataclass
class RawLayer:
    """What one source gives: canonical connection key -> raw text, tuning knob -> raw value,
    output setting -> raw value."""

    connection: dict[str, str] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)


def merge_layers(layers: Sequence[RawLayer]) -> RawLayer:
    """One layer taking each key and each knob from the first of ``layers`` that has it."""
    merged = RawLayer()
    for layer in reversed(layers):
        merged.connection.update(layer.connection)
        merged.tuning.update(layer.tuning)
        merged.output.update(layer.output)
    return merged


def connection_layer(text: str, where: str, warnings: list[str]) -> RawLayer:
    """A connection string as a layer (its warnings added to ``warnings``)."""
    values, found = parse_connection_string(text, where=where)
    warnings.extend(found)
    return RawLayer(connection=values)


def read_environment(
    environ: Mapping[str, str],
    tuning_names: Collection[str],
    warnings: list[str],
    output_names: Collection[str] = (),
) -> tuple[RawLayer, RawLayer]:
    """The ``ZOHO_CRM_<KEY>``, ``ZOHO_CRM_TUNING_<NAME>`` and ``ZOHO_CRM_OUTPUT_<NAME>``
    variables, then ``ZOHO_CRM_CONNECTION``.

    Variable names are case-insensitive and underscores inside a key are ignored.
    """
    per_key = RawLayer()
    whole = RawLayer()
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        rest = upper[len(ENV_PREFIX) :]
        if rest == "CONNECTION":
            whole = connection_layer(value, f"${name}", warnings)
        elif upper.startswith(ENV_TUNING_PREFIX):
            knob = rest[len("TUNING_") :].lower()
            if knob in tuning_names:
                per_key.tuning[knob] = value
            else:
                warnings.append(f"unknown tuning variable {name} is ignored")
        elif upper.startswith(ENV_OUTPUT_PREFIX):
            setting = rest[len("OUTPUT_") :].lower()
            if setting in output_names:
                per_key.output[setting] = value
            else:
                warnings.append(f"unknown output variable {name} is ignored")
        elif rest not in _ENV_NOT_KEYS:
            known = accept_key(per_key.connection, rest, value, "the environment", unique=False)
            # Only a near miss of a key is worth a warning; other ZOHO_CRM_ variables may belong
            # to other tools.
            if not known and suggest_key(rest):
                warnings.append(unknown_key_warning(name, "the environment", bare=rest))
    return per_key, whole


def read_toml(
    path: Path,
    tuning_names: Collection[str],
    warnings: list[str],
    output_names: Collection[str] = (),
) -> RawLayer:
    """A TOML file's ``[connection]`` table (or ``connection = "..."`` string), ``[tuning]`` and
    ``[output]``."""
    data = _load_toml(path)
    where = f"config file {path}"
    layer = RawLayer(
        connection=_toml_connection(data.get("connection"), where, warnings),
        tuning=_toml_tuning(data.get("tuning", {}), tuning_names, where, warnings),
        output=_toml_tuning(data.get("output", {}), output_names, where, warnings, "output"),
    )
    for name in data:
        if name not in ("connection", "tuning", "output"):
            warnings.append(f"unknown table or key {name!r} in {where} is ignored")
    return layer


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {redact(str(exc))}") from None


def _toml_connection(section: object, where: str, warnings: list[str]) -> dict[str, str]:
    if section is None:
        return {}
    if isinstance(section, str):
        values, found = parse_connection_string(section, where=where)
        warnings.extend(found)
        return values
    if not isinstance(section, dict):
        raise ConfigError(f"'connection' in {where} must be a table or a string")
    connection: dict[str, str] = {}
    for raw_key, raw_value in section.items():
        if not accept_key(connection, raw_key, _to_text(raw_value), where):
            warnings.append(unknown_key_warning(raw_key, where))
    return connection


def _toml_tuning(
    section: object,
    tuning_names: Collection[str],
    where: str,
    warnings: list[str],
    table: str = "tuning",
) -> dict[str, Any]:
    """The known settings of the ``[tuning]`` (or ``[output]``) table; unknown ones warned of."""
    if not isinstance(section, dict):
        raise ConfigError(f"'{table}' in {where} must be a table")
    tuning: dict[str, Any] = {}
    for name, value in section.items():
        if name in tuning_names:
            tuning[name] = value
        else:
            close = difflib.get_close_matches(name, tuning_names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"unknown {table} setting {name!r} in {where} is ignored{hint}")
    return tuning


def _to_text(value: Any) -> str:
    """A TOML value as the text a connection string would hold (``true``, ``a,b``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)
