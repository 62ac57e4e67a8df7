"""Page sizes, opaque keyset page ids and validated filter sets, shared by every list.

A page id is urlsafe base64 of ``{"k": list kind, "s": sort value, "i": row id}``: the
position after the last row shown. It is opaque to clients and checked on the way back in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

MAX_PAGE_LIMIT = 100
DEFAULT_PAGE_LIMIT = 100


def check_limit(limit: int) -> int:
    """The page size, or ValueError: pages hold 1 to MAX_PAGE_LIMIT items."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"limit must be an integer, got {limit!r}")
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}")
    return limit


def encode_page_id(kind: str, sort_value: int, row_id: str) -> str:
    """An opaque token for "the rows after this one" (urlsafe base64 of JSON)."""
    raw = json.dumps({"k": kind, "s": sort_value, "i": row_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_id(kind: str, page_id: str) -> tuple[int, str]:
    """The keyset position in a page id, or ValueError naming page_id."""
    try:
        padded = page_id + "=" * (-len(page_id) % 4)
        data = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"page_id is malformed: {page_id!r}") from exc
    if (
        not isinstance(data, dict)
        or set(data) != {"k", "s", "i"}
        or data["k"] != kind
        or isinstance(data["s"], bool)
        or not isinstance(data["s"], int)
        or not isinstance(data["i"], str)
    ):
        raise ValueError(f"page_id is not a {kind} page id: {page_id!r}")
    return data["s"], data["i"]


Q = TypeVar("Q", bound=BaseModel)


def build_query(model: type[Q], query: Q | None, filters: Mapping[str, Any]) -> Q:
    """One validated query from a query object and/or keyword filters (keywords win)."""
    unknown = sorted(set(filters) - set(model.model_fields))
    if unknown:
        raise ValueError(
            f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(model.model_fields)}"
        )
    if query is None:
        return model.model_validate(dict(filters))
    if not filters:
        return query
    return model.model_validate({**query.model_dump(exclude_unset=True), **filters})


@dataclass
class Where:
    """SQL conditions joined by AND, with their parameters in order."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        self.clauses.append(clause)
        self.params.extend(params)

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "1"
