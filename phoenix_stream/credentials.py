"""Bearer tokens of the HTTP API and what each may do: scopes ``admin`` and ``feedback``.

Two settings fill one store. ``PHOENIX_ADMIN_TOKEN`` is the one token with scope
``admin`` (deploy, promote, roll back, retrain). ``PHOENIX_FEEDBACK_TOKENS`` holds the
feedback credentials, comma-separated, each ``[MODEL=]TOKEN``: ``credit-risk=T1`` may
label only predictions of ``credit-risk``, ``*=T2`` or a bare ``T2`` any model. Scopes
never imply each other: the admin token cannot label and a feedback token cannot deploy,
so a model's owner can hand out labelling without handing out deployments.

A principal is named by its scope and its place in the setting (``feedback-2`` is the
second feedback token), never by the token, so the name can be stored with every label
(``http:feedback-2``) and logged. Every configured token is compared, in constant time
per token, over SHA-256 digests (equal lengths), whichever matches.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from phoenix_stream.exceptions import ConfigError

__all__ = [
    "ADMIN",
    "FEEDBACK",
    "AuthFailure",
    "Principal",
    "TokenStore",
    "parse_feedback_tokens",
]

ADMIN = "admin"
FEEDBACK = "feedback"
ANY_MODEL = "*"
HEADER = "Authorization"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token belongs to: ``scope`` (admin | feedback) and, for feedback, the models
    it may label (None: every model)."""

    name: str  # "admin" or "feedback-<n>", n counted from 1 in PHOENIX_FEEDBACK_TOKENS
    scope: str
    models: frozenset[str] | None = None

    def may_label(self, model: str) -> bool:
        """Whether this principal may attach labels to predictions of ``model``."""
        return self.scope == FEEDBACK and (self.models is None or model in self.models)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request is refused: HTTP ``status`` (401 or 403) and a message; the field
    at fault is always the ``Authorization`` header."""

    status: int
    error: str
    field: str | None = HEADER


def parse_feedback_tokens(raw: str) -> list[tuple[str, str]]:
    """``[MODEL=]TOKEN,...`` -> [(model or "*", token)]; ConfigError that never quotes a
    token. Whitespace around entries is ignored; an empty string holds no token."""
    entries: list[tuple[str, str]] = []
    for position, part in enumerate(raw.split(","), start=1):
        entry = part.strip()
        if not entry:
            continue
        model, sep, token = entry.rpartition("=")
        model = model.strip() if sep else ANY_MODEL
        token = token.strip()
        where = f"PHOENIX_FEEDBACK_TOKENS entry {position}"
        if not model:
            raise ConfigError(f"{where} has an empty model before '='")
        if len(token) < 16 or any(c.isspace() for c in token):
            raise ConfigError(f"{where} needs a token of at least 16 characters, no spaces")
        entries.append((model, token))
    return entries


def _digest(token: str) -> bytes:
    # surrogatepass: a header aiohttp decoded with surrogateescape still hashes, never raises.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenStore:
    """The configured tokens and their principals; :meth:`authenticate` checks a header."""

    def __init__(self, admin_token: str, feedback_tokens: list[tuple[str, str]]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        if admin_token:
            self._entries.append((_digest(admin_token), Principal(ADMIN, ADMIN)))
        by_token: dict[str, set[str]] = {}
        names: dict[str, str] = {}
        for position, (model, token) in enumerate(feedback_tokens, start=1):
            by_token.setdefault(token, set()).add(model)
            names.setdefault(token, f"feedback-{position}")
        for token, models in by_token.items():
            # One token listed for several models may label each of them.
            scope = None if ANY_MODEL in models else frozenset(models)
            self._entries.append((_digest(token), Principal(names[token], FEEDBACK, scope)))

    @classmethod
    def from_settings(cls, admin_token: str, feedback_tokens: str) -> TokenStore:
        """The store of ``PHOENIX_ADMIN_TOKEN`` and ``PHOENIX_FEEDBACK_TOKENS``."""
        return cls(admin_token, parse_feedback_tokens(feedback_tokens))

    def has_scope(self, scope: str) -> bool:
        """Whether any token of ``scope`` is configured (none: those endpoints are off)."""
        return any(principal.scope == scope for _, principal in self._entries)

    def authenticate(self, header: str | None, scope: str) -> Principal | AuthFailure:
        """The principal of ``Authorization: Bearer <token>`` if it holds ``scope``.

        403 when no token of ``scope`` is configured (off, never open), 401 without a
        bearer token, 403 for a token that is unknown or of another scope.
        """
        if not self.has_scope(scope):
            variable = "PHOENIX_ADMIN_TOKEN" if scope == ADMIN else "PHOENIX_FEEDBACK_TOKENS"
            return AuthFailure(403, f"{scope} endpoints are off: {variable} is not set", None)
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return AuthFailure(401, "missing bearer token")
        offered = _digest(token)
        found: Principal | None = None
        for digest, principal in self._entries:
            # Every entry is compared, so the time does not say which one matched.
            if hmac.compare_digest(offered, digest):
                found = principal
        if found is None:
            return AuthFailure(403, "wrong bearer token")
        if found.scope != scope:
            return AuthFailure(403, f"this token may not use {scope} endpoints")
        return found
