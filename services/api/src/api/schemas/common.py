"""Shapes shared by every resource: error bodies, pages, and constrained text types."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# PostgreSQL cannot store NUL in text, so it is refused on every backend (and the pattern tells
# API clients up front).
NO_NUL = r"^[^\x00]*$"

MAX_ID = 2**63 - 1  # largest id a 64-bit column (and SQLite's INTEGER) can hold


def text(*, min_length: int = 0, max_length: int, strip: bool = False) -> type[str]:
    """A string type with length limits that are checked after optional trimming."""
    return Annotated[  # type: ignore[return-value]
        str,
        StringConstraints(
            strip_whitespace=strip, min_length=min_length, max_length=max_length, pattern=NO_NUL
        ),
    ]


Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class RequestModel(BaseModel):
    """Base for JSON bodies: unknown fields are errors and JSON types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    error: str = Field(description="HTTP reason phrase", examples=["Not Found"])
    message: str = Field(description="What went wrong, for humans")
    status: int = Field(description="HTTP status code", examples=[404])
    request_id: str = Field(description="Echo of the X-Request-ID response header")


class ValidationErrorBody(ErrorBody):
    """A 422: the body or query parsed, but some fields hold invalid values."""

    errors: dict[str, str] = Field(
        description="Message per invalid field", examples=[{"email": "value is not a valid email"}]
    )


class Page[T](BaseModel):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` to get the next one."""

    items: list[T]
    next_cursor: str | None = Field(description="Cursor of the next page, null on the last page")
