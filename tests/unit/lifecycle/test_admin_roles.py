"""``registry list``'s roles, read from a worker's ``GET /v1/deployments`` answer.

The answer of a real worker after deploys and a promote: tests/integration/test_readme.py.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.lifecycle.admin_client import roles_served


def _entry(model: str, champion: str, challenger: str | None, strategy: str) -> dict[str, Any]:
    serving = {"model": model, "champion": champion, "challenger": challenger}
    return {"model": model, "serving": {**serving, "strategy": strategy}, "pending": None}


def test_each_model_gets_its_champion_and_challenger() -> None:
    answer = {
        "deployments": [
            _entry("credit-risk", "1", "2", "canary"),
            _entry("churn", "3", None, "single"),
        ]
    }
    assert roles_served(answer) == {
        "credit-risk": {"1": "champion", "2": "challenger (canary)"},
        "churn": {"3": "champion"},
    }


def test_a_model_with_nothing_serving_has_no_roles() -> None:
    answer = {"deployments": [{"model": "ghost", "serving": None, "pending": None}]}
    assert roles_served(answer) == {}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=20))  # fmt: skip
def test_a_strange_answer_gives_roles_or_nothing_but_never_raises(junk: Any) -> None:
    answer = junk if isinstance(junk, dict) else {"deployments": junk}
    roles = roles_served(answer)
    assert all(isinstance(role, str) for versions in roles.values() for role in versions.values())
