"""Query parameters of every list endpoint, and the opaque cursor they carry."""

import base64
import binascii
import pickle
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from api.web.models import MAX_ID, hide_null_defaults

Cursor = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def encode_cursor(last_id: int) -> str:
    """Opaque token for "the page after id ``last_id``" (clients must not build these)."""
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Inverse of ``encode_cursor``; raises ValueError for anything it did not produce."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("invalid cursor") from None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise ValueError("invalid cursor")
    return int(raw)


_schema_cache: dict[tuple[Any, ...], bytes] = {}


class PageQuery(BaseModel):
    # Optional query parameters are simply absent; null is not something a URL can say.
    model_config = ConfigDict(json_schema_extra=hide_null_defaults)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The JSON schema, generated once per class and arguments.

        flask-openapi3 asks a query model for its JSON schema on every request (to find array
        fields); generating it was ~40% of the CPU of a list request. A class's schema never
        changes; a fresh copy is returned because callers may edit it. Kept pickled: unpickling
        (one C call) copies it in 5 µs, ``copy.deepcopy`` took 26 µs.
        """
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _schema_cache:
            _schema_cache[key] = pickle.dumps(super().model_json_schema(*args, **kwargs))
        # Our own bytes, never outside input.
        schema: dict[str, Any] = pickle.loads(_schema_cache[key])
        return schema

    limit: int = Field(default=20, ge=1, le=100, description="Page size")
    cursor: Cursor | SkipJsonSchema[None] = Field(
        default=None, description="`next_cursor` of the previous page"
    )

    @field_validator("cursor")
    @classmethod
    def _check_cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    @property
    def after_id(self) -> int:
        """Keyset position: rows with an id above this one belong to the page."""
        return decode_cursor(self.cursor) if self.cursor else 0
