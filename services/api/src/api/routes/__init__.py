"""HTTP layer: one blueprint per resource.

``RESOURCES`` is what ``create_app`` registers under /api, in this order (the order of the
OpenAPI document's tags): add your resource's blueprint here.
"""

from api.routes import items, users

RESOURCES = [users.bp, items.bp]
