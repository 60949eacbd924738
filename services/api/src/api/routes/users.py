"""/api/users: sign-up, public profiles, and the caller's own account."""

from typing import Any, NoReturn

from flask import Response, abort, url_for
from sqlalchemy import Row

from api.auth import SECURITY_REQUIRED, auth_required, current_user
from api.core.security import hash_api_key, new_api_key
from api.extensions import get_db
from api.repositories import users as users_repo
from api.schemas.users import (
    ApiKey,
    UserCreate,
    UserCreated,
    UserPath,
    UserPrivate,
    UserPublic,
    UserUpdate,
)
from api.web.models import Page
from api.web.openapi import BODY_ERRORS, errors, resource_blueprint
from api.web.pagination import PageQuery
from api.web.responses import json_response, no_content, paginated_response

bp = resource_blueprint("users", __name__)

EMAIL_TAKEN = "A user with this email address already exists."


def _gone() -> NoReturn:
    # The account was deleted by a concurrent request after this one authenticated.
    abort(401, description="Invalid API key.")


@bp.post("", responses={201: UserCreated, **errors(*BODY_ERRORS, 409)})
def create_user(body: UserCreate) -> Response:
    """Sign up; the response holds the API key, which is never shown again."""
    api_key = new_api_key()
    try:
        with get_db().write() as conn:
            user = users_repo.create(
                conn, name=body.name, email=body.email, api_key_hash=hash_api_key(api_key)
            )
    except users_repo.EmailTakenError:
        abort(409, description=EMAIL_TAKEN)
    created = UserCreated.model_validate({**user._mapping, "api_key": api_key})
    location = url_for("users.get_user", user_id=user.id, _external=True)
    return json_response(created, 201, {"Location": location})


@bp.get("", responses={200: Page[UserPublic], **errors()})
def list_users(query: PageQuery) -> Response:
    """List users (public view), oldest first."""

    def fetch(after_id: int, limit: int) -> list[Row[Any]]:
        with get_db().read() as conn:
            return users_repo.list_after(conn, after_id=after_id, limit=limit)

    return paginated_response(fetch, query, UserPublic)


@bp.get("/me", responses={200: UserPrivate, **errors(401)}, security=SECURITY_REQUIRED)
@auth_required
def get_me() -> Response:
    """The caller's own account, email included."""
    return json_response(UserPrivate.model_validate(current_user()))


@bp.patch(
    "/me",
    responses={200: UserPrivate, **errors(*BODY_ERRORS, 401, 409)},
    security=SECURITY_REQUIRED,
)
@auth_required
def update_me(body: UserUpdate) -> Response:
    """Change the caller's name and/or email."""
    user = current_user()
    changes = body.model_dump(exclude_unset=True)
    if changes:
        try:
            with get_db().write() as conn:
                updated = users_repo.update(conn, user.id, changes)
        except users_repo.EmailTakenError:
            abort(409, description=EMAIL_TAKEN)
        if updated is None:
            _gone()
        user = updated
    return json_response(UserPrivate.model_validate(user))


@bp.delete("/me", responses={204: None, **errors(401)}, security=SECURITY_REQUIRED)
@auth_required
def delete_me() -> Response:
    """Delete the caller's account and all of their items."""
    with get_db().write() as conn:
        users_repo.delete(conn, current_user().id)
    return no_content()


@bp.post(
    "/me/api-key", responses={200: ApiKey, **errors(400, 401, 409)}, security=SECURITY_REQUIRED
)
@auth_required
def rotate_api_key() -> Response:
    """Issue a new API key; the old one stops working immediately."""
    api_key = new_api_key()
    with get_db().write() as conn:
        user = users_repo.update(conn, current_user().id, {"api_key_hash": hash_api_key(api_key)})
    if user is None:
        _gone()
    return json_response(ApiKey(api_key=api_key))


@bp.get("/<int:user_id>", responses={200: UserPublic, **errors(404)})
def get_user(path: UserPath) -> Response:
    """A user's public profile."""
    with get_db().read() as conn:
        user = users_repo.get(conn, path.user_id)
    if user is None:
        abort(404, description="User not found.")
    return json_response(UserPublic.model_validate(user))
