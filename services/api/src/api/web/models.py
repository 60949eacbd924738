"""Shapes shared by every resource: error bodies, pages, and constrained text types."""

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

# PostgreSQL cannot store NUL in text, so it is refused on every backend (and the pattern tells
# API clients up front).
NO_NUL = r"^[^\x00]*$"

MAX_ID = 2**63 - 1  # largest id a 64-bit column (and SQLite's INTEGER) can hold


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


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` to get the next one."""

    items: list[T]
    next_cursor: str | None = Field(description="Cursor of the next page, null on the last page")


def hide_null_defaults(schema: dict[str, Any]) -> None:
    """Drop ``"default": null`` from properties whose null branch is hidden (SkipJsonSchema).

    "Omitted" is the real default there; a null default would invite clients to send null.
    """
    for prop in schema.get("properties", {}).values():
        if prop.get("default", ...) is None:
            del prop["default"]


class PartialUpdateModel(RequestModel):
    """Base for PATCH bodies: every field may be left out, none may be set to null.

    Declare fields as ``T | SkipJsonSchema[None] = None``; routes read the changes with
    ``model_dump(exclude_unset=True)``.
    """

    model_config = ConfigDict(json_schema_extra=hide_null_defaults)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its value")
        return value
