"""Request headers as text, safely: the one way views read a header.

aiohttp keeps the bytes of a header that is not UTF-8 as lone surrogates
(``surrogateescape``), so such a value raises at the first ``.encode()`` far from where
it entered. Here it is refused where it is read, naming the header.
"""

from __future__ import annotations

from collections.abc import Mapping

from phoenix_stream.exceptions import ValidationError


def header_text(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (None when absent); ValidationError if not UTF-8."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: undecodable bytes on the wire
        raise ValidationError(name, "is not valid UTF-8") from exc
    return value
