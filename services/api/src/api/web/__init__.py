"""HTTP machinery: the parts that adapt Flask, flask-openapi3, pydantic and gunicorn to this API's
contract (one JSON error shape, strict JSON bodies, cursor pages, stable OpenAPI).

Adding or replacing a resource should not need a change here: that is ``routes/``, ``schemas/``,
``repositories/`` and ``tables.py`` (docs/customize.md).
"""
