"""/api/items: items owned by users, private unless marked public."""

from typing import Any

from flask import Response, abort, url_for
from sqlalchemy import Row

from api.auth import (
    SECURITY_OPTIONAL,
    SECURITY_REQUIRED,
    auth_optional,
    auth_required,
    current_user,
    optional_user,
)
from api.extensions import get_db
from api.repositories import items as items_repo
from api.schemas.items import Item, ItemCreate, ItemListQuery, ItemPath, ItemUpdate
from api.web.models import Page
from api.web.openapi import BODY_ERRORS, errors, resource_blueprint
from api.web.responses import json_response, no_content, paginated_response

bp = resource_blueprint("items", __name__)

NO_ACCESS = "You do not have access to this item."


def _found(item: Row[Any] | None) -> Row[Any]:
    if item is None:
        abort(404, description="Item not found.")
    return item


def _owned(item: Row[Any] | None) -> Row[Any]:
    """The item if the caller owns it: 404 when absent, 403 when someone else's."""
    item = _found(item)
    if item.owner_id != current_user().id:
        abort(403, description=NO_ACCESS)
    return item


@bp.post("", responses={201: Item, **errors(*BODY_ERRORS, 401, 409)}, security=SECURITY_REQUIRED)
@auth_required
def create_item(body: ItemCreate) -> Response:
    """Create an item owned by the caller."""
    with get_db().write() as conn:
        item = items_repo.create(conn, owner_id=current_user().id, **body.model_dump())
    location = url_for("items.get_item", item_id=item.id, _external=True)
    return json_response(Item.model_validate(item), 201, {"Location": location})


@bp.get("", responses={200: Page[Item], **errors(401)}, security=SECURITY_OPTIONAL)
@auth_optional
def list_items(query: ItemListQuery) -> Response:
    """Public items plus the caller's own, oldest first; filter with ``owner_id``."""
    user = optional_user()

    def fetch(after_id: int, limit: int) -> list[Row[Any]]:
        with get_db().read() as conn:
            return items_repo.list_visible(
                conn,
                viewer_id=user.id if user is not None else None,
                owner_id=query.owner_id,
                after_id=after_id,
                limit=limit,
            )

    return paginated_response(fetch, query, Item)


@bp.get(
    "/<int:item_id>", responses={200: Item, **errors(401, 403, 404)}, security=SECURITY_OPTIONAL
)
@auth_optional
def get_item(path: ItemPath) -> Response:
    """An item, if it is public or the caller owns it."""
    with get_db().read() as conn:
        item = _found(items_repo.get(conn, path.item_id))
    user = optional_user()
    if not item.is_public and (user is None or item.owner_id != user.id):
        abort(403, description=NO_ACCESS)
    return json_response(Item.model_validate(item))


@bp.patch(
    "/<int:item_id>",
    responses={200: Item, **errors(*BODY_ERRORS, 401, 403, 404)},
    security=SECURITY_REQUIRED,
)
@auth_required
def update_item(path: ItemPath, body: ItemUpdate) -> Response:
    """Change some fields of one of the caller's items."""
    changes = body.model_dump(exclude_unset=True)
    # Check and change in one transaction, so the item cannot vanish or change hands in between.
    with get_db().write() as conn:
        item = _owned(items_repo.get(conn, path.item_id))
        if changes:
            item = items_repo.update(conn, item.id, changes)
    return json_response(Item.model_validate(item))


@bp.delete(
    "/<int:item_id>",
    responses={204: None, **errors(401, 403, 404)},
    security=SECURITY_REQUIRED,
)
@auth_required
def delete_item(path: ItemPath) -> Response:
    """Delete one of the caller's items."""
    with get_db().write() as conn:
        _owned(items_repo.get(conn, path.item_id))
        items_repo.delete(conn, path.item_id)
    return no_content()
