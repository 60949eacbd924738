"""Item request and response models."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from api.web.models import NO_NUL, Id, PartialUpdateModel, RequestModel
from api.web.pagination import PageQuery

ItemName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)
]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]


class ItemCreate(RequestModel):
    name: ItemName = Field(examples=["Notebook"])
    description: Description = ""
    is_public: bool = False


class ItemUpdate(PartialUpdateModel):
    """Partial update: send only the fields to change."""

    name: ItemName | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    is_public: bool | SkipJsonSchema[None] = None


class ItemPath(BaseModel):
    item_id: Id


class ItemListQuery(PageQuery):
    owner_id: Id | SkipJsonSchema[None] = Field(default=None, description="Only items of this user")


class Item(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    is_public: bool
    owner_id: int
    created_at: datetime
    updated_at: datetime
