"""The authenticator of control records: signing, verification, canonical form, rotation.

The readers on the real topics (forged records produced straight to them, dead-lettered
and changing nothing): tests/integration/test_control_records.py.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.exceptions import ConfigError, Unauthenticated, ValidationError
from phoenix_stream.lifecycle.control_auth import AUTH_FIELD, ControlAuth, canonical

KEY, OLD, OTHER = "k" * 32, "o" * 32, "x" * 32
TOPIC = "phoenix.deployments"

# Text PostgreSQL can store: records holding NUL are refused where they enter.
_text = partial(
    st.text, alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text(max_size=8), inner),
    max_leaves=20,
)
records = st.dictionaries(
    _text(max_size=12).filter(lambda k: k != AUTH_FIELD), json_values, min_size=1
)


@given(records)
def test_a_sealed_record_opens_to_itself(record: dict[str, Any]) -> None:
    auth = ControlAuth(KEY)
    assert auth.open(TOPIC, auth.seal(TOPIC, record)) == record


@given(records, st.data())
def test_any_change_of_any_field_breaks_the_tag(record: dict[str, Any], data: Any) -> None:
    auth = ControlAuth(KEY)
    sealed = orjson.loads(auth.seal(TOPIC, record))
    field = data.draw(st.sampled_from(sorted(record)))
    changed = data.draw(
        json_values.filter(lambda v: orjson.dumps(v) != orjson.dumps(record[field]))
    )
    with pytest.raises(Unauthenticated) as caught:
        auth.verify(TOPIC, {**sealed, field: changed})
    assert caught.value.field == AUTH_FIELD
    dropped = {k: v for k, v in sealed.items() if k != field}
    with pytest.raises(Unauthenticated):
        auth.verify(TOPIC, dropped)


@given(records, _text(min_size=1, max_size=12).filter(lambda k: k != AUTH_FIELD), scalars)
def test_an_added_field_breaks_the_tag(record: dict[str, Any], name: str, value: Any) -> None:
    auth = ControlAuth(KEY)
    sealed = orjson.loads(auth.seal(TOPIC, record))
    if name in record:
        return  # a change, not an addition: covered above
    with pytest.raises(Unauthenticated):
        auth.verify(TOPIC, {**sealed, name: value})


@given(records)
def test_the_canonical_form_ignores_key_order_and_whitespace(record: dict[str, Any]) -> None:
    auth = ControlAuth(KEY)
    sealed = orjson.loads(auth.seal(TOPIC, record))
    reordered = dict(reversed(list(sealed.items())))
    spaced = json.dumps(reordered, indent=2, ensure_ascii=True).encode()
    assert auth.open(TOPIC, spaced) == record
    assert canonical(TOPIC, record) == canonical(TOPIC, orjson.loads(orjson.dumps(record)))


def test_the_canonical_form_is_fixed() -> None:
    # A change here invalidates every record on the topics: it must be deliberate.
    assert canonical("t", {"b": [1, 2.5], "a": {"y": None, "x": "é"}, AUTH_FIELD: "z"}) == (
        b'{"record":{"a":{"x":"\xc3\xa9","y":null},"b":[1,2.5]},"topic":"t"}'
    )


def test_a_record_signed_for_another_topic_or_key_is_refused() -> None:
    record = {"model": "m", "generation": 5}
    auth = ControlAuth(KEY)
    with pytest.raises(Unauthenticated):
        auth.open(TOPIC, auth.seal("phoenix.retrain", record))
    with pytest.raises(Unauthenticated):
        auth.open(TOPIC, ControlAuth(OTHER).seal(TOPIC, record))


@pytest.mark.parametrize(
    "value",
    [
        b'{"model": "m"}',  # no tag
        b'{"model": "m", "auth": 7}',
        b'{"model": "m", "auth": "00"}',
        b'{"model": "m", "auth": "' + b"0" * 64 + b'"}',
        b'{"n": 123456789012345678901234567890, "auth": "' + b"0" * 64 + b'"}',
    ],
)
def test_an_unsigned_or_malformed_record_is_refused_by_name(value: bytes) -> None:
    with pytest.raises(Unauthenticated) as caught:
        ControlAuth(KEY).open(TOPIC, value)
    assert caught.value.field in ("auth", "$")


@pytest.mark.parametrize("value", [b"[1, 2]", b"not json", b"", None])
def test_what_is_not_a_json_object_is_an_invalid_record(value: bytes | None) -> None:
    with pytest.raises(ValidationError) as caught:
        ControlAuth(KEY).open(TOPIC, value)
    assert caught.value.field == "$" and not isinstance(caught.value, Unauthenticated)


def test_rotation_readers_accept_the_previous_key_writers_sign_with_the_current() -> None:
    record = {"model": "m"}
    signed_before = ControlAuth(OLD).seal(TOPIC, record)
    rotating = ControlAuth(KEY, [OLD])
    assert rotating.open(TOPIC, signed_before) == record
    assert ControlAuth(KEY).open(TOPIC, rotating.seal(TOPIC, record)) == record
    with pytest.raises(Unauthenticated):
        ControlAuth(KEY).open(TOPIC, signed_before)  # once the previous key is dropped


def test_without_a_key_nothing_is_signed_and_the_error_names_the_variable() -> None:
    auth = ControlAuth("")
    assert not auth.configured
    with pytest.raises(ConfigError, match="PHOENIX_CONTROL_KEY"):
        auth.seal(TOPIC, {"model": "m"})
    with pytest.raises(Unauthenticated):
        auth.open(TOPIC, ControlAuth(KEY).seal(TOPIC, {"model": "m"}))


def test_a_record_holding_nul_is_refused_by_name() -> None:
    auth = ControlAuth(KEY)
    with pytest.raises(ValidationError):
        auth.open(TOPIC, auth.seal(TOPIC, {"model": "m\x00"}))
