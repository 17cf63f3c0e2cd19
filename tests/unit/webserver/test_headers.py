"""Headers as text: a value that is not UTF-8 is refused by name, any other kept as is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.webserver.headers import header_text

# What aiohttp hands over: header bytes decoded as UTF-8 with surrogateescape.
WIRE = st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", "surrogateescape"))


@given(value=WIRE | st.text(max_size=40))
def test_any_value_is_kept_or_refused_by_name(value: str) -> None:
    headers = CIMultiDict({"Authorization": value})
    try:
        got = header_text(headers, "authorization")
    except ValidationError as exc:
        assert exc.field == "authorization"
        with pytest.raises(UnicodeEncodeError):
            value.encode("utf-8")
    else:
        assert got == value
        got.encode("utf-8")  # safe to use anywhere


def test_undecodable_bytes_and_absence() -> None:
    raw = b"Bearer \xff\xfe".decode("utf-8", "surrogateescape")
    with pytest.raises(ValidationError) as caught:
        header_text(CIMultiDict({"Authorization": raw}), "Authorization")
    assert caught.value.field == "Authorization"
    assert header_text(CIMultiDict(), "Authorization") is None
