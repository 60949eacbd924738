"""Query parameters of every list endpoint, and the opaque cursor they carry."""

import base64
import binascii
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from api.schemas.common import MAX_ID, hide_null_defaults

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


class PageQuery(BaseModel):
    # Optional query parameters are simply absent; null is not something a URL can say.
    model_config = ConfigDict(json_schema_extra=hide_null_defaults)

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
