"""The app a view serves: Faust gives each view its app, typed as the generic ``AppT``."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from faust import web

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


def phoenix_app(view: web.View) -> PhoenixApp:
    """The :class:`~phoenix_stream.app.PhoenixApp` that ``view`` was registered on."""
    return cast("PhoenixApp", view.app)
