"""The app's class (api/web/application.py): Flask's answer to "is this callable async?", kept."""

import gc
import weakref

import pytest
from flask import Flask
from flask.testing import FlaskClient


def test_a_sync_callable_is_returned_as_it_is(app: Flask) -> None:
    def hook() -> None: ...

    assert app.ensure_sync(hook) is hook
    assert app.ensure_sync(hook) is hook


def test_an_async_callable_still_gets_flasks_handling(app: Flask) -> None:
    # Flask wraps an async def with async_to_sync, which needs the "async" extra; the image does
    # not install it, so Flask refuses. Asked twice, it refuses twice: no wrong answer is kept.
    async def view() -> None: ...

    for _ in range(2):
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(view)


def test_requests_run_every_hook_with_the_answers_kept(client: FlaskClient) -> None:
    # The same request twice: the second is served from the kept answers and behaves the same
    # (request id, log hooks, the JSON error of an unknown path).
    for _ in range(2):
        response = client.get("/api/items/999999")
        assert response.status_code == 404
        assert response.is_json
        assert response.headers["X-Request-ID"]


def test_a_hook_made_for_one_request_is_not_kept(app: Flask) -> None:
    # after_this_request hooks are closures made per request: keeping them would keep whatever
    # they hold (a response, a body) for the life of the worker.
    with app.test_request_context():

        def per_request(response: object) -> object:
            return response

        ref = weakref.ref(per_request)
        assert app.ensure_sync(per_request) is per_request
        del per_request
    gc.collect()
    assert ref() is None
