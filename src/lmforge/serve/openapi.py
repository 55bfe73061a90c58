"""The served OpenAPI document (`GET /openapi.json`), true to what the server does.

FastAPI documents only what it validates itself, so the main routes, which read their JSON
bodies by hand (to answer as OpenAI does), would show no request body, and every route would
list a 422 that the server never sends (errors.install answers 400). Here the document gets
the real request schemas (the pydantic models the routes validate with) and the real error
statuses, each with the OpenAI error body, so that schema-driven clients and fuzzers
(schemathesis) reach every route and can hold the server to its word.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

# status -> when; every operation may answer these (a key, the body limit, the queue ...)
ERRORS = {
    "400": "Invalid request: the error says which field and why",
    "401": "Missing or wrong API key",
    "403": "Not allowed: an admin route for a client key, or a write from another web page",
    "404": "Unknown model, adapter, route or record",
    "413": "Request body too large",
    "415": "The body is not application/json",
    "429": "Too many requests: the queue is full or the key's rate is reached (Retry-After)",
    "503": "The server is shutting down",
}
REF = "#/components/schemas/{model}"


def install(app: FastAPI, bodies: dict[tuple[str, str], type[BaseModel]]) -> None:
    """Serve the document with `bodies` ((method, path) -> request model) as request bodies."""

    def document() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, bodies)
        return app.openapi_schema

    app.openapi = document


def build(app: FastAPI, bodies: dict[tuple[str, str], type[BaseModel]]) -> dict:
    """The OpenAPI document of `app`, completed as the module says."""
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = _ERROR
    for (method, path), model in bodies.items():
        operation = doc["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    for operations in doc["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, why in ERRORS.items():
                responses.setdefault(status, {"description": why, "content": error})
    return doc


_ERROR = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
