"""The connection keys (the Loome guide's names), and the one way every source accepts a key.

A key may be written in any case, with underscores, dashes or spaces (``OAuth_Client_Id``), or
under an alias (TOML snake_case, the ``Settings`` field names): :func:`canonical_key` maps each
spelling to its canonical name. :func:`accept_key` is the step every source (the connection
string, a ``ZOHO_CRM_<KEY>`` variable, a TOML ``[connection]`` table) takes for one key: secrets
are registered for redaction as soon as they are read, ``Scope`` is normalised, a key given twice
is refused. :func:`parse_connection_string` reads a Loome-style ``Key=Value;`` string.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

from connector.errors import ConfigError
from connector.redact import redact, register_secret

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


def squash(key: str) -> str:
    """Lower-case a key and drop underscores, dashes and spaces: ``OAuth_Client_Id`` -> ``oauthclientid``."""
    return re.sub(r"[\s_\-]", "", key).lower()


_KEY_LOOKUP: dict[str, str] = {squash(k): k for k in KNOWN_KEYS}
_KEY_LOOKUP.update({squash(alias): key for alias, key in _ALIASES.items()})


def canonical_key(key: str) -> str | None:
    """Return the canonical name of a connection key in any accepted spelling, or None."""
    return _KEY_LOOKUP.get(squash(key))


def suggest_key(key: str) -> str | None:
    """Return the known key closest to a misspelled ``key``, or None when nothing is close."""
    squashed = squash(key)
    if not squashed:
        return None
    match = difflib.get_close_matches(squashed, [squash(k) for k in KNOWN_KEYS], n=1, cutoff=0.7)
    return _KEY_LOOKUP[match[0]] if match else None


def unknown_key_warning(key: str, where: str, *, bare: str | None = None) -> str:
    """The warning for an unknown ``key`` in ``where``, with the closest known key as a hint.

    ``bare`` is the name to match when ``key`` carries a prefix (``ZOHO_CRM_REGON``: ``REGON``).
    """
    suggestion = suggest_key(bare if bare is not None else key)
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return f"unknown key {key!r} in {where} is ignored{hint}"


def _looks_secret(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("secret", "token", "password"))


def split_scopes(text: str) -> tuple[str, ...]:
    """Split a scope list written with commas and/or whitespace (line breaks included)."""
    return tuple(part for part in re.split(r"[\s,]+", text) if part)


def accept_key(
    values: dict[str, str], raw_key: str, value: str, where: str, *, unique: bool = True
) -> bool:
    """Store ``value`` in ``values`` under the canonical name of ``raw_key``; False if unknown.

    A secret is registered for redaction before anything else, and so is the value of an unknown
    key whose name looks like a secret's (``OAuthRefeshToken``); nothing is stored for an unknown
    key. ``Scope`` is normalised to a comma list without whitespace. With ``unique``, a key given
    twice is a ConfigError; without, the last value wins.
    """
    key = canonical_key(raw_key)
    if key is None:
        if _looks_secret(raw_key):
            register_secret(value)
        return False
    if key in SECRET_KEYS:
        register_secret(value)
    if unique and key in values:
        raise ConfigError(f"{key} is given twice in {where}: keep one")
    values[key] = ",".join(split_scopes(value)) if key == "Scope" else value
    return True


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
    for raw_key, value in _Scanner(text, where).fragments():
        if not accept_key(values, raw_key, value, where):
            warnings.append(unknown_key_warning(raw_key, where))
    return values, warnings


class _Scanner:
    """Reads the ``Key=Value;`` fragments of a connection string, left to right."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.pos = 0

    def fragments(self) -> Iterator[tuple[str, str]]:
        """Yield (key as written, value) for each fragment; ConfigError at a malformed one."""
        number = 0
        previous_key: str | None = None
        while self._skip_separators():
            number += 1
            raw_key = self._key(number, previous_key)
            shown_key = canonical_key(raw_key) or raw_key
            value = self._value(shown_key)
            previous_key = shown_key
            yield raw_key, value

    def _at(self, chars: str) -> bool:
        """Whether the text goes on and its next character is one of ``chars``."""
        return self.pos < len(self.text) and self.text[self.pos] in chars

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _skip_separators(self) -> bool:
        """Skip whitespace and empty fragments (``;;``); False at the end of the text."""
        while self.pos < len(self.text) and (self.text[self.pos].isspace() or self._at(";")):
            self.pos += 1
        return self.pos < len(self.text)

    def _key(self, number: int, previous_key: str | None) -> str:
        """The key of fragment ``number``, as written; leaves the position past its ``=``."""
        start = self.pos
        while self.pos < len(self.text) and not self._at("=;"):
            self.pos += 1
        if not self._at("="):
            fragment = self.text[start : self.pos].strip()
            raise ConfigError(_no_equals_message(fragment, number, previous_key))
        raw_key = self.text[start : self.pos].strip()
        self.pos += 1  # past "="
        if not raw_key:
            raise ConfigError(
                f"fragment {number} of {self.where} has no key before '=': write Key=Value;"
            )
        return raw_key

    def _value(self, shown_key: str) -> str:
        """The value after ``=``, quoted or not; leaves the position past its ``;`` (or the end)."""
        self._skip_space()
        if self._at("'\""):
            value = self._quoted(shown_key)
        else:
            start = self.pos
            while self.pos < len(self.text) and not self._at(";"):
                self.pos += 1
            value = self.text[start : self.pos].strip()
        self.pos += 1  # past ";" (or the end)
        return value

    def _quoted(self, shown_key: str) -> str:
        """A quoted value; the value may hold ``;`` and ``=``, and a doubled quote is one quote."""
        text = self.text
        quote = text[self.pos]
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.pos >= len(text):
                raise ConfigError(
                    f"the quoted value of {shown_key!s} in {self.where} has no closing {quote}"
                )
            if text.startswith(quote * 2, self.pos):
                chars.append(quote)
                self.pos += 2
                continue
            if text[self.pos] == quote:
                self.pos += 1
                break
            chars.append(text[self.pos])
            self.pos += 1
        self._skip_space()
        if self.pos < len(text) and not self._at(";"):
            raise ConfigError(
                f"unexpected text after the quoted value of {shown_key!s} in {self.where}: "
                "end the value with ';'"
            )
        return "".join(chars)


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
