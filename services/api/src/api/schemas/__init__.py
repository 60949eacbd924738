"""Pydantic models: request validation, response shapes, and the source of the OpenAPI document."""
