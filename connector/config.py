"""Settings: a Loome-style connection string, a TOML file and the environment -> one ``Settings``.

Sources, highest precedence first (each key is taken from the first source that has it):

1. the explicit connection string (``--connection``);
2. one environment variable per key, ``ZOHO_CRM_<KEY>`` (``ZOHO_CRM_REGION``,
   ``ZOHO_CRM_OAUTHREFRESHTOKEN``; case-insensitive, underscores inside the key ignored);
3. the whole connection string in ``ZOHO_CRM_CONNECTION``;
4. the TOML file (``--config``): a ``[connection]`` table or a ``connection = "..."`` string;
5. the defaults.

Tuning knobs come from the TOML ``[tuning]`` table and ``ZOHO_CRM_TUNING_<NAME>`` variables (the
environment wins).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.errors import ConfigError
from connector.redact import redact, register_secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "ZOHO_CRM_"
ENV_CONNECTION = "ZOHO_CRM_CONNECTION"
ENV_TUNING_PREFIX = "ZOHO_CRM_TUNING_"
# Environment variables with our prefix that are not connection keys.
_ENV_NOT_KEYS = frozenset({"CONNECTION", "TOKEN_CACHE_DIR"})


class Region(str, Enum):
    """A Zoho data centre."""

    US = "US"
    EU = "EU"
    IN = "IN"
    AU = "AU"
    JP = "JP"
    CN = "CN"
    CA = "CA"
    SA = "SA"
    UK = "UK"


class InstanceType(str, Enum):
    """Which environment of the org: production, sandbox or developer."""

    PRODUCTION = "production"
    SANDBOX = "sandbox"
    DEVELOPER = "developer"


class InitiateOAuth(str, Enum):
    """How tokens are obtained: refresh them, or use the given access token as is."""

    REFRESH = "REFRESH"
    OFF = "OFF"
    GETANDREFRESH = "GETANDREFRESH"


class APIType(str, Enum):
    """Which API reads full loads: Bulk Read or the Records/COQL REST APIs."""

    BULK = "Bulk"
    REST = "REST"


# Canonical connection keys, in documentation order.
KNOWN_KEYS: tuple[str, ...] = (
    "Region",
    "InstanceType",
    "InitiateOAuth",
    "OAuthClientId",
    "OAuthClientSecret",
    "OAuthAccessToken",
    "OAuthRefreshToken",
    "Scope",
    "UseCOQL",
    "APIType",
    "AccountsServer",
    "APIDomain",
    "APIVersion",
    "OAuthSettingsLocation",
)
SECRET_KEYS = frozenset({"OAuthClientSecret", "OAuthAccessToken", "OAuthRefreshToken"})

# Other spellings accepted for a key (TOML snake_case and the Settings field names).
_ALIASES: dict[str, str] = {
    "client_id": "OAuthClientId",
    "client_secret": "OAuthClientSecret",
    "access_token": "OAuthAccessToken",
    "refresh_token": "OAuthRefreshToken",
    "scopes": "Scope",
    "token_cache_path": "OAuthSettingsLocation",
}


def _squash(key: str) -> str:
    """Lower-case a key and drop underscores, dashes and spaces: ``OAuth_Client_Id`` -> ``oauthclientid``."""
    return re.sub(r"[\s_\-]", "", key).lower()


_KEY_LOOKUP: dict[str, str] = {_squash(k): k for k in KNOWN_KEYS}
_KEY_LOOKUP.update({_squash(alias): key for alias, key in _ALIASES.items()})

_REGION_NAMES: dict[str, Region] = {
    "us": Region.US,
    "unitedstates": Region.US,
    "eu": Region.EU,
    "europe": Region.EU,
    "in": Region.IN,
    "india": Region.IN,
    "au": Region.AU,
    "australia": Region.AU,
    "jp": Region.JP,
    "japan": Region.JP,
    "cn": Region.CN,
    "china": Region.CN,
    "ca": Region.CA,
    "canada": Region.CA,
    "sa": Region.SA,
    "saudiarabia": Region.SA,
    "uk": Region.UK,
    "unitedkingdom": Region.UK,
}
_INSTANCE_NAMES: dict[str, InstanceType] = {
    "production": InstanceType.PRODUCTION,
    "sandbox": InstanceType.SANDBOX,
    "development": InstanceType.DEVELOPER,
    "developer": InstanceType.DEVELOPER,
}
_OAUTH_NAMES: dict[str, InitiateOAuth] = {m.value.lower(): m for m in InitiateOAuth}
_API_TYPE_NAMES: dict[str, APIType] = {m.value.lower(): m for m in APIType}
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def canonical_key(key: str) -> str | None:
    """Return the canonical name of a connection key in any accepted spelling, or None."""
    return _KEY_LOOKUP.get(_squash(key))


def suggest_key(key: str) -> str | None:
    """Return the known key closest to a misspelled ``key``, or None when nothing is close."""
    squashed = _squash(key)
    if not squashed:
        return None
    match = difflib.get_close_matches(squashed, [_squash(k) for k in KNOWN_KEYS], n=1, cutoff=0.7)
    return _KEY_LOOKUP[match[0]] if match else None


def _unknown_key_warning(key: str, where: str, *, bare: str | None = None) -> str:
    suggestion = suggest_key(bare if bare is not None else key)
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return f"unknown key {key!r} in {where} is ignored{hint}"


def _looks_secret(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("secret", "token", "password"))


def split_scopes(text: str) -> tuple[str, ...]:
    """Split a scope list written with commas and/or whitespace (line breaks included)."""
    return tuple(part for part in re.split(r"[\s,]+", text) if part)


def parse_connection_string(
    text: str, *, where: str = "the connection string"
) -> tuple[dict[str, str], list[str]]:
    """Parse a Loome-style ``Key=Value;`` string into canonical key -> raw value, plus warnings.

    Keys are case-insensitive; whitespace and line breaks around ``;`` and ``=`` are ignored; a
    value may be quoted with ``'`` or ``"`` (a doubled quote inside is a literal quote) so it can
    hold ``;`` or ``=``. ``Scope`` is normalised to a comma list without whitespace. Secret values
    are registered for redaction as soon as they are read and never appear in an error.
    """
    values: dict[str, str] = {}
    warnings: list[str] = []
    pos = 0
    length = len(text)
    fragment_no = 0
    previous_key: str | None = None
    while pos < length:
        # Skip whitespace and empty fragments (";;").
        while pos < length and (text[pos].isspace() or text[pos] == ";"):
            pos += 1
        if pos >= length:
            break
        fragment_no += 1
        start = pos
        while pos < length and text[pos] not in "=;":
            pos += 1
        if pos >= length or text[pos] == ";":
            fragment = text[start:pos].strip()
            raise ConfigError(_no_equals_message(fragment, fragment_no, previous_key))
        raw_key = text[start:pos].strip()
        pos += 1  # past "="
        if not raw_key:
            raise ConfigError(
                f"fragment {fragment_no} of {where} has no key before '=': write Key=Value;"
            )
        key = canonical_key(raw_key)
        shown_key = key or raw_key
        while pos < length and text[pos].isspace():
            pos += 1
        if pos < length and text[pos] in "'\"":
            quote = text[pos]
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= length:
                    raise ConfigError(
                        f"the quoted value of {shown_key!s} in {where} has no closing {quote}"
                    )
                if text[pos] == quote:
                    if pos + 1 < length and text[pos + 1] == quote:
                        chars.append(quote)
                        pos += 2
                        continue
                    pos += 1
                    break
                chars.append(text[pos])
                pos += 1
            value = "".join(chars)
            while pos < length and text[pos].isspace():
                pos += 1
            if pos < length and text[pos] != ";":
                raise ConfigError(
                    f"unexpected text after the quoted value of {shown_key!s} in {where}: "
                    "end the value with ';'"
                )
        else:
            value_start = pos
            while pos < length and text[pos] != ";":
                pos += 1
            value = text[value_start:pos].strip()
        pos += 1  # past ";" (or the end)
        previous_key = shown_key
        if key is None:
            if _looks_secret(raw_key):
                register_secret(value)
            warnings.append(_unknown_key_warning(raw_key, where))
            continue
        if key in SECRET_KEYS:
            register_secret(value)
        if key in values:
            raise ConfigError(f"{key} is given twice in {where}: keep one")
        if key == "Scope":
            value = ",".join(split_scopes(value))
        values[key] = value
    return values, warnings


def _no_equals_message(fragment: str, fragment_no: int, previous_key: str | None) -> str:
    after_secret = previous_key in SECRET_KEYS if previous_key else False
    if after_secret or _looks_secret(fragment):
        starts = next((k for k in KNOWN_KEYS if fragment.lower().startswith(k.lower())), None)
        near = f" (it starts with {starts})" if starts else ""
        after = (
            f"; if the value of {previous_key} contains ';' or '=', put it in quotes"
            if after_secret
            else ""
        )
        return (
            f"fragment {fragment_no} of the connection string has no '='{near}; its text is not "
            f"shown because it may hold a secret{after}"
        )
    shown = redact(fragment)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (
        f"fragment {fragment_no} of the connection string, {shown!r}, has no '=': write Key=Value;"
    )


# ----------------------------------------------------------------------------------------------
# The settings models


class Tuning(BaseModel):
    """Knobs users rarely touch and tests shrink (times in seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    http_connect_timeout: float = Field(default=10.0, gt=0)
    http_read_timeout: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    retry_initial_wait: float = Field(default=1.0, ge=0)
    retry_max_wait: float = Field(default=60.0, ge=0)
    bulk_poll_initial: float = Field(default=2.0, ge=0)
    bulk_poll_max: float = Field(default=60.0, ge=0)
    bulk_poll_timeout: float = Field(default=3 * 3600.0, gt=0)
    token_expiry_margin: float = Field(default=300.0, ge=0)
    workers: int = Field(default=4, ge=1)
    group_calls: int = Field(default=1, ge=1)
    checkpoint_rows: int = Field(default=200_000, ge=1)


TUNING_NAMES: tuple[str, ...] = tuple(Tuning.model_fields)


class Settings(BaseModel):
    """The validated connector settings (frozen; secrets are ``SecretStr`` and never shown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: Region
    instance_type: InstanceType = InstanceType.PRODUCTION
    initiate_oauth: InitiateOAuth = InitiateOAuth.REFRESH
    client_id: str | None = None
    client_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    scopes: tuple[str, ...] = ()
    use_coql: bool = False
    api_type: APIType = APIType.BULK
    accounts_server: str | None = None
    api_domain: str | None = None
    api_version: str = "v8"
    token_cache_path: Path | None = None
    tuning: Tuning = Field(default_factory=Tuning)

    @property
    def refreshes_tokens(self) -> bool:
        """Whether tokens are minted with the refresh token (REFRESH and GETANDREFRESH)."""
        return self.initiate_oauth is not InitiateOAuth.OFF


@dataclass(frozen=True)
class LoadedSettings:
    """Validated settings and the warnings met while loading them (unknown keys, …)."""

    settings: Settings
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Value conversion


def parse_region(value: str) -> Region:
    """A Region from a code or the Loome guide's name (``EU``, ``Europe``, ``eu``); else ConfigError."""
    allowed = ", ".join(r.value for r in Region)
    region: Region = _choice("Region", value, _REGION_NAMES, allowed)
    return region


def _choice(key: str, value: str, names: Mapping[str, Any], allowed: str) -> Any:
    found = names.get(re.sub(r"[\s_\-]", "", value).lower())
    if found is None:
        raise ConfigError(f"{key}={_show(key, value)} is not valid: use one of {allowed}")
    return found


def _show(key: str, value: str) -> str:
    if key in SECRET_KEYS:
        return "***"
    shown = redact(value)
    return repr(shown[:40] + "..." if len(shown) > 40 else shown)


def _bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{key}={_show(key, value)} is not valid: use true or false")


def _url(key: str, value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ConfigError(
            f"{key}={_show(key, value)} is not valid: give a base URL such as https://host"
        )
    return value.rstrip("/")


def _path(key: str, value: str) -> Path:
    if not value.strip() or "\x00" in value:
        raise ConfigError(f"{key} is not a valid file path")
    path = Path(value.strip())
    try:
        return path.expanduser()
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{key}: cannot expand '~' in the path ({exc})") from None


def _nonempty(key: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def build_settings(values: Mapping[str, str], tuning: Mapping[str, Any] | None = None) -> Settings:
    """Validate canonical key -> raw value (and tuning knobs) into ``Settings``, or ConfigError."""
    for key in SECRET_KEYS:
        register_secret(values.get(key))
    accounts_server = values.get("AccountsServer")
    api_domain = values.get("APIDomain")
    kwargs: dict[str, Any] = {}
    if _nonempty("AccountsServer", accounts_server):
        kwargs["accounts_server"] = _url("AccountsServer", str(accounts_server))
    if _nonempty("APIDomain", api_domain):
        kwargs["api_domain"] = _url("APIDomain", str(api_domain))

    regions = (
        "US, EU (Europe), IN (India), AU (Australia), JP (Japan), CN (China), CA (Canada), SA, UK"
    )
    region_raw = _nonempty("Region", values.get("Region"))
    if region_raw is not None:
        kwargs["region"] = _choice("Region", region_raw, _REGION_NAMES, regions)
    elif "accounts_server" in kwargs and "api_domain" in kwargs:
        kwargs["region"] = Region.US
    else:
        raise ConfigError(
            f"Region is required: set Region= one of {regions} "
            "(or give both AccountsServer and APIDomain)"
        )
    if (raw := _nonempty("InstanceType", values.get("InstanceType"))) is not None:
        kwargs["instance_type"] = _choice(
            "InstanceType", raw, _INSTANCE_NAMES, "Production, Sandbox, Development (Developer)"
        )
    if (raw := _nonempty("InitiateOAuth", values.get("InitiateOAuth"))) is not None:
        kwargs["initiate_oauth"] = _choice(
            "InitiateOAuth", raw, _OAUTH_NAMES, "REFRESH, OFF, GETANDREFRESH"
        )
    if (raw := _nonempty("APIType", values.get("APIType"))) is not None:
        kwargs["api_type"] = _choice("APIType", raw, _API_TYPE_NAMES, "Bulk, REST")
    if (raw := _nonempty("UseCOQL", values.get("UseCOQL"))) is not None:
        kwargs["use_coql"] = _bool("UseCOQL", raw)
    if (raw := _nonempty("APIVersion", values.get("APIVersion"))) is not None:
        if not re.fullmatch(r"v\d+(\.\d+)?", raw, flags=re.IGNORECASE):
            raise ConfigError(
                f"APIVersion={_show('APIVersion', raw)} is not valid: use v8 (or v7, …)"
            )
        kwargs["api_version"] = raw.lower()
    if (raw := _nonempty("Scope", values.get("Scope"))) is not None:
        kwargs["scopes"] = split_scopes(raw)
    if (raw := _nonempty("OAuthSettingsLocation", values.get("OAuthSettingsLocation"))) is not None:
        kwargs["token_cache_path"] = _path("OAuthSettingsLocation", raw)
    if (raw := _nonempty("OAuthClientId", values.get("OAuthClientId"))) is not None:
        kwargs["client_id"] = raw
    for key, name in (
        ("OAuthClientSecret", "client_secret"),
        ("OAuthAccessToken", "access_token"),
        ("OAuthRefreshToken", "refresh_token"),
    ):
        if (raw := _nonempty(key, values.get(key))) is not None:
            kwargs[name] = SecretStr(raw)

    mode = kwargs.get("initiate_oauth", InitiateOAuth.REFRESH)
    if mode is InitiateOAuth.OFF:
        if "access_token" not in kwargs:
            raise ConfigError(
                "OAuthAccessToken is required when InitiateOAuth=OFF "
                "(or set InitiateOAuth=REFRESH with OAuthClientId, OAuthClientSecret and "
                "OAuthRefreshToken)"
            )
    else:
        missing = [
            key
            for key, name in (
                ("OAuthClientId", "client_id"),
                ("OAuthClientSecret", "client_secret"),
                ("OAuthRefreshToken", "refresh_token"),
            )
            if name not in kwargs
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required when "
                f"InitiateOAuth={mode.value} (or set InitiateOAuth=OFF with OAuthAccessToken)"
            )
    kwargs["tuning"] = build_tuning(tuning or {})
    try:
        return Settings(**kwargs)
    except ValidationError as exc:  # pragma: no cover - every field is checked above
        raise ConfigError(f"invalid settings: {redact(str(exc.errors()[0].get('msg')))}") from None


def build_tuning(values: Mapping[str, Any]) -> Tuning:
    """Validate tuning knobs (unknown names must be filtered out before) into ``Tuning``."""
    try:
        return Tuning(**dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error.get("loc", ())) or "tuning"
        raise ConfigError(f"tuning setting {name} is not valid: {error.get('msg')}") from None


# ----------------------------------------------------------------------------------------------
# Sources and precedence (through pydantic-settings)


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


class _LayerSource(PydanticBaseSettingsSource):
    """A settings source holding one already-read layer: ``{"connection": {...}, "tuning": {...}}``."""

    def __init__(self, settings_cls: type[BaseSettings], layer: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._layer = layer

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return this layer's value for one field (pydantic-settings protocol)."""
        return self._layer.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._layer.items() if v}


def _connection_layer(text: str, where: str, warnings: list[str]) -> dict[str, Any]:
    values, found = parse_connection_string(text, where=where)
    warnings.extend(found)
    return {"connection": values}


def _env_layers(
    environ: Mapping[str, str], warnings: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    per_key: dict[str, str] = {}
    tuning: dict[str, Any] = {}
    whole: dict[str, Any] = {}
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        rest = upper[len(ENV_PREFIX) :]
        if rest == "CONNECTION":
            whole = _connection_layer(value, f"${name}", warnings)
            continue
        if upper.startswith(ENV_TUNING_PREFIX):
            knob = rest[len("TUNING_") :].lower()
            if knob in TUNING_NAMES:
                tuning[knob] = value
            else:
                warnings.append(f"unknown tuning variable {name} is ignored")
            continue
        if rest in _ENV_NOT_KEYS:
            continue
        key = canonical_key(rest)
        if key is None:
            if _looks_secret(rest):
                register_secret(value)
            # Only a near miss of a key is worth a warning; other ZOHO_CRM_ variables may belong
            # to other tools.
            if suggest_key(rest):
                warnings.append(_unknown_key_warning(name, "the environment", bare=rest))
            continue
        if key in SECRET_KEYS:
            register_secret(value)
        if key == "Scope":
            value = ",".join(split_scopes(value))
        per_key[key] = value
    return {"connection": per_key, "tuning": tuning}, whole


def _toml_layer(path: Path, warnings: list[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {redact(str(exc))}") from None
    where = f"config file {path}"
    connection: dict[str, str] = {}
    section = data.get("connection")
    if isinstance(section, str):
        connection, found = parse_connection_string(section, where=where)
        warnings.extend(found)
    elif isinstance(section, dict):
        for raw_key, raw_value in section.items():
            key = canonical_key(raw_key)
            if key is None:
                if _looks_secret(raw_key):
                    register_secret(_to_text(raw_value))
                warnings.append(_unknown_key_warning(raw_key, where))
                continue
            if key in connection:
                raise ConfigError(f"{key} is given twice in {where}: keep one")
            value = _to_text(raw_value)
            if key in SECRET_KEYS:
                register_secret(value)
            if key == "Scope":
                value = ",".join(split_scopes(value))
            connection[key] = value
    elif section is not None:
        raise ConfigError(f"'connection' in {where} must be a table or a string")
    tuning: dict[str, Any] = {}
    tuning_section = data.get("tuning", {})
    if not isinstance(tuning_section, dict):
        raise ConfigError(f"'tuning' in {where} must be a table")
    for name, value in tuning_section.items():
        if name in TUNING_NAMES:
            tuning[name] = value
        else:
            close = difflib.get_close_matches(name, TUNING_NAMES, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"unknown tuning setting {name!r} in {where} is ignored{hint}")
    for name in data:
        if name not in ("connection", "tuning"):
            warnings.append(f"unknown table or key {name!r} in {where} is ignored")
    return {"connection": connection, "tuning": tuning}


def load_settings(
    connection: str | None = None,
    config_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Load settings from every source by precedence and validate them; ConfigError if invalid."""
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    layers: list[dict[str, Any]] = []  # highest precedence first
    if connection is not None:
        layers.append(_connection_layer(connection, "the connection string", warnings))
    per_key, whole = _env_layers(environ, warnings)
    layers.append(per_key)
    layers.append(whole)
    if config_file is not None:
        layers.append(_toml_layer(Path(config_file), warnings))

    class _Merged(BaseSettings):
        """Raw values merged by pydantic-settings, source by source."""

        model_config = SettingsConfigDict(extra="ignore")
        connection: dict[str, str] = Field(default_factory=dict)
        tuning: dict[str, Any] = Field(default_factory=dict)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return tuple(_LayerSource(settings_cls, layer) for layer in layers)

    merged = _Merged()
    try:
        settings = build_settings(merged.connection, merged.tuning)
    except ConfigError as error:
        if not warnings:
            raise
        # The warnings often explain the error ("OAuthRefeshToken … did you mean OAuthRefreshToken?"),
        # and the error is the one line the user sees: carry them in it.
        raise ConfigError(f"{error} ({'; '.join(warnings)})") from None
    return LoadedSettings(settings, warnings)
