"""Success responses: Pydantic models serialised straight to JSON (pydantic-core is fast)."""

import functools
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, request
from pydantic import BaseModel
from werkzeug.sansio.utils import get_current_url

from api.web.models import Page
from api.web.pagination import PageQuery, encode_cursor


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return current_app.response_class(
        model.model_dump_json(), status=status, headers=headers, mimetype="application/json"
    )


def paginated_response(
    fetch: Callable[[int, int], Sequence[Any]], query: PageQuery, item_model: type[BaseModel]
) -> Response:
    """Run a keyset query and answer with a ``Page`` plus an RFC 8288 ``Link: rel="next"``.

    ``fetch(after_id, limit)`` returns rows with an ``id``, ordered by id. One extra row is asked
    for to learn whether a next page exists without a COUNT.
    """
    rows = fetch(query.after_id, query.limit + 1)
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = encode_cursor(rows[-1].id) if has_more else None
    # One validation call for the whole page: pydantic-core reads the rows' attributes itself
    # instead of being called once per row from Python. (item_model is chosen at run time, which
    # mypy cannot check as a type argument.)
    page = Page[item_model].model_validate(  # type: ignore[valid-type]
        {"items": rows, "next_cursor": next_cursor}, from_attributes=True
    )
    headers = {}
    if next_cursor is not None:
        args: dict[str, Any] = {
            **request.args.to_dict(),
            "limit": query.limit,
            "cursor": next_cursor,
        }
        headers["Link"] = f'<{_this_url_with(args)}>; rel="next"'
    return json_response(page, headers=headers)


def _this_url_with(args: dict[str, Any]) -> str:
    """The request's own URL with the query ``args``: what ``url_for(request.endpoint,
    _external=True, **args)`` builds for a rule without variables (and, unlike it, also right for
    one with variables), at half its cost: Werkzeug's query encoding, without its URL builder."""
    base = _base_url(request.scheme, request.host, request.root_path, request.path)
    return f"{base}?{urlencode(args, safe=_QUERY_SAFE)}"


# ``request.base_url`` is this function of these four parts, and it decodes the URL back to an
# IRI every time (~8 us of a page: docs/performance.md). A page's URL is the same for every
# request of a list endpoint behind one host name; the cache is bounded, so a client that varies
# its Host header only evicts entries.
_base_url = functools.lru_cache(maxsize=64)(get_current_url)


# The characters Werkzeug leaves unescaped in a query (werkzeug.urls._urlencode).
_QUERY_SAFE = "!$'()*,/:;?@"


def no_content() -> Response:
    """A 204 with neither body nor Content-Type (there is no content to describe)."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response
