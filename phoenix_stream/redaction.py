"""Secrets out of everything the project prints: one function, and a logging guard.

``redact`` hides, anywhere in a text (a URL, a DSN, an exception message, a log line):

- the password of a URL's user info (``scheme://user:pw@host``, ``redis://:pw@host``; the
  user name is kept), with an unencoded ``@`` or ``:`` in the password too;
- the value of every ``name=value`` whose name contains ``pass``, ``pwd``, ``secret`` or
  ``token`` (``?password=``, ``&sslpassword=``, libpq's ``password=... host=...``, quoted
  values included);
- a ``Bearer`` credential.

``LogRedaction`` passes every log record through ``redact`` and also replaces the
literal secret values it is given (the settings' passwords and tokens), whatever form a
driver's message puts them in: the last line of defence behind explicit redaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "LogRedaction", "redact", "secrets_in", "settings_secrets"]

MASK = "***"

# scheme://userinfo@ : the user info runs to the last "@" before a "/" or a blank, so a
# raw "@", "?" or "#" in a password is still inside it.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/]*)@")
# name=value where the name says secret. A query value ends at "&" or "#", a libpq value
# at a blank; quoted values (libpq, repr) end at their closing quote.
_PARAMETER = re.compile(
    r"(?P<name>[\w.\-]*(?:pass|pwd|secret|token)[\w.\-]*)"
    r"(?P<sep>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&#]*)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<name>\bBearer\s+)(?P<value>[^\s'\",;]+)", re.IGNORECASE)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if colon else match[0]


def _mask_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[:1] if value[:1] in ("'", '"') else ""
    return f"{match['name']}{match['sep']}{quote}{MASK}{quote}" if value else match[0]


def redact(text: str) -> str:
    """``text`` with every password, secret and token it holds replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(_mask_userinfo, text)
    text = _PARAMETER.sub(_mask_value, text)
    return _BEARER.sub(lambda m: f"{m['name']}{MASK}", text)


def secrets_in(url: str) -> set[str]:
    """The secret values a URL or DSN carries (password, secret-named parameters), raw and
    percent-decoded, for ``LogRedaction``."""
    found: set[str] = set()
    for match in _USERINFO.finditer(url):
        _user, colon, password = match["userinfo"].partition(":")
        if colon and password:
            found.update({password, unquote(password)})
    for match in _PARAMETER.finditer(url):
        value = match["value"].strip("'\"")
        if value:
            found.update({value, unquote(value)})
    try:
        query = urlsplit(url).query
    except ValueError:  # not a URL at all (a libpq key=value string)
        query = ""
    for name, value in parse_qsl(query):
        if _PARAMETER.fullmatch(f"{name}=x") and value:
            found.add(value)
    return found


class LogRedaction(logging.Filter):
    """Rewrites each log record (message, arguments, traceback) through ``redact`` and
    replaces the given literal secrets; it never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole; values of
        # fewer than 4 characters would mask ordinary words (and guard next to nothing).
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._formatter = logging.Formatter()

    def scrub(self, text: str) -> str:
        """``text`` through ``redact``, then without any of the known secrets."""
        text = redact(text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; always keep it."""
        message = record.getMessage()
        # An empty tuple, not None: mode's formatter wraps a non-tuple into one.
        record.msg, record.args = self.scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True

    def install(self) -> None:
        """Scrub every record as it is made, whatever handlers logging is configured with
        later (mode's worker replaces them with ``dictConfig``)."""
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        if getattr(previous, "redaction", None) is not None:
            previous = previous.previous  # type: ignore[attr-defined]

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.filter(record)
            return record

        factory.redaction = self  # type: ignore[attr-defined]
        factory.previous = previous  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


# Field names that hold a secret outright, and those that may carry credentials inside.
_SECRET_FIELD = re.compile(r"pass|pwd|secret|token|(?:^|_)keys?(?:_|$)", re.IGNORECASE)
# Lists of secrets ("k1,k2", "model=token,..."): each item is a secret of its own; short
# items are left alone (they would mask ordinary words, and no setting allows them).
_MIN_LISTED_SECRET = 8
_ADDRESS_FIELD = re.compile(r"(?:^|_)(?:url|dsn)$", re.IGNORECASE)


def settings_secrets(settings: Any) -> set[str]:
    """The secret values a settings dataclass holds: fields named like a secret (token,
    key, password) and the credentials inside its URLs and DSNs."""
    found: set[str] = set()
    for field in fields(settings):
        value = getattr(settings, field.name)
        if not isinstance(value, str) or not value:
            continue
        if _ADDRESS_FIELD.search(field.name):
            found |= secrets_in(value)
        elif _SECRET_FIELD.search(field.name):
            found.add(value)
            for item in value.split(","):
                secret = item.rpartition("=")[2].strip()
                if len(secret) >= _MIN_LISTED_SECRET:
                    found.add(secret)
    return found
