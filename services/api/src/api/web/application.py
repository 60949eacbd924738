"""The app's class: flask-openapi3's ``OpenAPI``, remembering which callables are not async."""

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from flask_openapi3 import OpenAPI


class ApiApp(OpenAPI):
    """``OpenAPI`` that remembers the plain (not ``async def``) callables ``ensure_sync`` saw.

    Flask passes every request hook, the view and any error handler through ``ensure_sync`` on
    every request, to wrap an ``async def`` one; each answer is an ``inspect.iscoroutinefunction``
    call (~1.4 us in the image, a dozen per request: docs/performance.md, "Code changes"). The
    set holds them weakly, so a hook made for one request (``after_this_request``) is forgotten
    with it, and a callable that cannot be weakly referenced is simply asked about each time.
    Async ones are not remembered: Flask wraps them as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._plain_callables: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
        super().__init__(*args, **kwargs)

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if func in self._plain_callables:  # False for one that cannot be weakly referenced
            return func
        sync = super().ensure_sync(func)
        if sync is func:
            with contextlib.suppress(TypeError):  # it cannot be weakly referenced
                self._plain_callables.add(func)
        return sync
