"""``GET /v1/drift/{model}``'s ``limit`` parameter: any text gives a limit or a named 422."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.web.drift import DEFAULT_LIMIT, MAX_LIMIT, parse_limit


@pytest.mark.parametrize(
    ("raw", "limit"), [(None, DEFAULT_LIMIT), ("1", 1), ("50", 50), (" 7 ", 7), ("1000", 1000)]
)
def test_a_limit_in_range_is_taken(raw: str | None, limit: int) -> None:
    assert parse_limit(raw) == limit


@pytest.mark.parametrize(
    "raw", ["", "0", "1001", "-5", "+5", "1_0", "2.5", "1e3", "٣", "abc", "9" * 400]
)
def test_anything_else_is_refused_naming_limit(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_limit(raw)
    assert caught.value.field == "limit"


@given(st.text())
@example("1\x1f")  # str.strip() took the unit separator as space; int() does not
def test_any_text_gives_a_limit_in_range_or_a_validation_error(raw: str) -> None:
    try:
        limit = parse_limit(raw)
    except ValidationError as exc:
        assert exc.field == "limit"
    else:
        assert 1 <= limit <= MAX_LIMIT and int(raw) == limit
