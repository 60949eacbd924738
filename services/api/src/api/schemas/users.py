"""User request and response models."""

from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from api.web.models import NO_NUL, Id, PartialUpdateModel, RequestModel


def _normalise_email(value: str) -> str:
    # email-validator lower-cases the domain and applies Unicode normalisation; deliverability
    # (DNS) checks are off: they are slow, flaky, and need network access.
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


UserName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=2, max_length=100, pattern=NO_NUL)
]
Email = Annotated[
    str,
    StringConstraints(max_length=320),
    AfterValidator(_normalise_email),
    Field(json_schema_extra={"format": "email"}),
]


class UserCreate(RequestModel):
    name: UserName = Field(examples=["Alice"])
    email: Email = Field(examples=["alice@example.com"])


class UserUpdate(PartialUpdateModel):
    """Partial update: send only the fields to change."""

    name: UserName | SkipJsonSchema[None] = None
    email: Email | SkipJsonSchema[None] = None


class UserPath(BaseModel):
    user_id: Id


class UserPublic(BaseModel):
    """What anyone may see about a user (no email)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime


class UserPrivate(UserPublic):
    """What the user sees about themself."""

    email: str


class UserCreated(UserPrivate):
    api_key: str = Field(description="Bearer token; shown only in this response")


class ApiKey(BaseModel):
    api_key: str = Field(description="New bearer token; the previous one no longer works")
