"""The token store: scopes admin and feedback[:model], parsing that never quotes a token."""

from __future__ import annotations

import pytest

from phoenix_stream.credentials import (
    ADMIN,
    FEEDBACK,
    AuthFailure,
    Principal,
    TokenStore,
    parse_feedback_tokens,
)
from phoenix_stream.exceptions import ConfigError
from phoenix_stream.settings import Settings

ADMIN_TOKEN = "admin-token-0123456789"
ANY = "any-model-token-0123"
CREDIT = "credit-risk-token-01"


def store() -> TokenStore:
    return TokenStore.from_settings(ADMIN_TOKEN, f" {ANY} , credit-risk={CREDIT},churn={CREDIT}")


def test_parsing_scopes_and_refusals_that_never_show_a_token() -> None:
    assert parse_feedback_tokens("") == []
    assert parse_feedback_tokens(f"{ANY},*={CREDIT},m={CREDIT}") == [
        ("*", ANY),
        ("*", CREDIT),
        ("m", CREDIT),
    ]
    for raw in ("m=short-secret", "=0123456789abcdef0", "m=0123456789 abcdef"):
        with pytest.raises(ConfigError, match="PHOENIX_FEEDBACK_TOKENS entry 1") as info:
            parse_feedback_tokens(raw)
        assert raw.rpartition("=")[2] not in str(info.value)
    with pytest.raises(ConfigError, match="PHOENIX_FEEDBACK_TOKENS"):
        Settings(admin_token=ADMIN_TOKEN, feedback_tokens=ADMIN_TOKEN)  # one token, two scopes
    assert ANY not in repr(Settings(feedback_tokens=ANY))


def test_each_token_holds_only_its_scope() -> None:
    tokens = store()
    admin = tokens.authenticate(f"Bearer {ADMIN_TOKEN}", ADMIN)
    assert admin == Principal("admin", ADMIN)
    anyone = tokens.authenticate(f"bearer {ANY}", FEEDBACK)
    assert isinstance(anyone, Principal) and anyone.name == "feedback-1"
    assert anyone.may_label("credit-risk") and anyone.may_label("anything")
    scoped = tokens.authenticate(f"Bearer {CREDIT}", FEEDBACK)
    assert isinstance(scoped, Principal) and scoped.name == "feedback-2"
    assert scoped.models == frozenset({"credit-risk", "churn"})
    assert scoped.may_label("churn") and not scoped.may_label("fraud")
    assert not admin.may_label("credit-risk")
    refusals = {
        (None, FEEDBACK): 401,
        ("Basic abc", FEEDBACK): 401,
        ("Bearer ", FEEDBACK): 401,
        ("Bearer nope", FEEDBACK): 403,
        (f"Bearer {ADMIN_TOKEN}", FEEDBACK): 403,  # the admin token does not label
        (f"Bearer {ANY}", ADMIN): 403,  # a feedback token does not deploy
        ("Bearer \udcff\udcfe", ADMIN): 403,  # undecodable header bytes: refused, no raise
    }
    for (header, scope), status in refusals.items():
        failure = tokens.authenticate(header, scope)
        assert isinstance(failure, AuthFailure) and failure.status == status, header
        assert failure.field == "Authorization"


def test_a_scope_without_tokens_is_off() -> None:
    tokens = TokenStore.from_settings(ADMIN_TOKEN, "")
    failure = tokens.authenticate(f"Bearer {ADMIN_TOKEN}", FEEDBACK)
    assert isinstance(failure, AuthFailure) and failure.status == 403
    assert "PHOENIX_FEEDBACK_TOKENS is not set" in failure.error
    assert not TokenStore.from_settings("", ANY).has_scope(ADMIN)
