"""LoRA adapters served beside the base model, chosen per request as `model: "base:adapter"`.

`Adapters` holds the loaded ones by name; the admin routes load (`POST /admin/adapters`
{"name"}) and unload (`DELETE /admin/adapters/{name}`) them at run time. `{"name": NEW,
"as": OLD}` hot-swaps: NEW is served under the name OLD from the next request on, so clients
keep asking for `base:OLD` (the feedback loop's swap). A request holds
its adapter object from submission to its end, so unloading only stops new requests (404).
Names are store artifact names (`check_name`): a request never reaches outside the store.
"""

from __future__ import annotations

import asyncio
import threading

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from lmforge.engine.lora import LoraAdapter
from lmforge.engine.native import NativeDecoder
from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.serve.errors import APIError
from lmforge.store import Store, check_name


class Adapters:
    """The LoRA adapters loaded for `model` (a `lmforge.Model`), whose store name is `base`."""

    def __init__(self, model, base: str, store: Store | None = None):
        self.model, self.base = model, base
        self.store = store or Store()
        self._loaded: dict[str, LoraAdapter] = {}
        self._lock = threading.Lock()

    def load(self, name: str, served_as: str | None = None) -> LoraAdapter:
        """Read the adapter artifact `name` (a LoRA tuned from the base) and offer it, under
        the name `served_as` if given (replacing what was served under it)."""
        check_name(name)
        if served_as is not None:
            check_name(served_as)
        artifact = self.store.get(name)
        if artifact.kind != "adapter":
            raise InvalidInputError(f"{name} is not an adapter", "pass an artifact made by tune")
        if artifact.parent != self.base:
            raise InvalidInputError(
                f"adapter {name} was tuned from {artifact.parent!r}, not the served {self.base!r}",
                f"serve {artifact.parent} to use it",
            )
        if not isinstance(getattr(self.model, "decoder", None), NativeDecoder):
            raise InvalidInputError(
                "per-request adapters need the native engine without a prefix adapter",
                "serve a Llama-family base model",
            )
        adapter = LoraAdapter.read(artifact.path / "adapter", self.model.decoder, name)
        with self._lock:
            self._loaded[served_as or name] = adapter
        return adapter

    def unload(self, name: str) -> None:
        with self._lock:
            if self._loaded.pop(name, None) is None:
                raise NotFoundError(f"no adapter {name!r} is loaded", "GET /v1/models lists them")

    def get(self, name: str) -> LoraAdapter | None:
        with self._lock:
            return self._loaded.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded)


class AdapterLoad(BaseModel):
    """POST /admin/adapters: load the adapter artifact `name`, served as `as` (or its name;
    an `as` already served is swapped for it)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str
    as_: str | None = Field(None, alias="as")


def install(app: FastAPI, adapters: Adapters, read_body) -> None:
    """The admin routes; `read_body(request)` reads a JSON object body (size-limited)."""

    @app.post("/admin/adapters")
    async def load_adapter(request: Request) -> dict:
        body = AdapterLoad.model_validate(await read_body(request))
        name, served_as = body.name, body.as_
        try:
            await asyncio.to_thread(adapters.load, name, served_as)
        except NotFoundError as e:
            raise APIError(404, str(e), "name", "model_not_found") from e
        served = served_as or name
        return {"object": "adapter", "name": name, "model": f"{adapters.base}:{served}"}

    @app.delete("/admin/adapters/{name}")
    async def unload_adapter(name: str) -> dict:
        check_name(name)
        try:
            adapters.unload(name)
        except NotFoundError as e:
            raise APIError(404, str(e), "name", "model_not_found") from e
        return {"object": "adapter", "name": name, "deleted": True}
