"""The /recommend request: parsed and validated before any model runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

MAX_K = 1000  # Largest list a request may ask for.
MAX_RECENT_ITEMS = 200  # Largest real-time session a request may carry.


class RequestError(ValueError):
    """A well-formed JSON request whose content is invalid (HTTP 422): names the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecommendRequest:
    """What a client asks for."""

    user: str | None = None  # Raw user id; None or unknown ids take a cold-start path.
    recent_items: tuple[str, ...] = ()  # The session's items, oldest first, after the log.
    context: str | None = None  # e.g. the country; None = the user's last known context.
    k: int = 10  # Items to return.


def parse_request(body: Any) -> RecommendRequest:
    """Validates a decoded JSON body; raises RequestError naming the offending field."""
    if not isinstance(body, Mapping):
        raise RequestError("body", f"expected a JSON object, found {type(body).__name__}")
    unknown = sorted(set(body) - {"user", "recent_items", "context", "k"})
    if unknown:
        raise RequestError(unknown[0], "unknown field (expected user, recent_items, context, k)")
    user = _optional_id(body, "user")
    context = _optional_id(body, "context")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RequestError("k", f"expected an integer from 1 to {MAX_K}, found {k!r}")
    recent = body.get("recent_items", [])
    if not isinstance(recent, list):
        raise RequestError("recent_items", f"expected a list of ids, found {recent!r}")
    if len(recent) > MAX_RECENT_ITEMS:
        raise RequestError("recent_items", f"at most {MAX_RECENT_ITEMS} items, found {len(recent)}")
    items = []
    for position, item in enumerate(recent):
        if isinstance(item, bool) or not isinstance(item, str | int) or str(item) == "":
            raise RequestError(f"recent_items[{position}]", f"expected an id, found {item!r}")
        items.append(str(item))
    return RecommendRequest(user=user, recent_items=tuple(items), context=context, k=k)


def _optional_id(body: Mapping, field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise RequestError(field, f"expected a string or integer id, found {value!r}")
    return str(value)


class RecommendService(Protocol):
    """What the HTTP layer needs from a recommender."""

    model_version: str

    def recommend(self, request: RecommendRequest) -> dict[str, Any]:
        """The JSON-ready response (see `recjax.serving.recommender`)."""
        ...
