"""Routes for operators: the Raft event journal, per-second stats, and the API reference.

Theory of operation: all of these are answered locally from memory, never forwarded:

* ``GET /api/v1/events?after=&limit=``: this node's :class:`~beaver_vault.node.events.EventJournal`;
* ``GET /api/v1/stats?after_ms=``: this node's per-second samples (``stats.py``), taken by a
  task that runs while the app serves;
* ``GET /openapi.json``: ``openapi.yaml`` (package data, beside this module), parsed once and
  served as JSON; ``tests/test_openapi.py`` checks it against the registered routes;
* ``GET /docs``: a page that renders that document with the console's own script
  (``ui/docs.html`` + ``ui/docs.js``): nothing is loaded from anywhere but this node.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.context import API_PREFIX
from beaver_vault.api.errors import json_response, json_text
from beaver_vault.api.stats import StatsSampler
from beaver_vault.api.ui_routes import NO_CACHE, UI_FOLDER, UI_PACKAGE
from beaver_vault.api.validation import parse_int, parse_optional_int
from beaver_vault.node.events import PAGE_MAX
from beaver_vault.node.runtime import NodeRuntime

SPEC_RESOURCE = "openapi.yaml"


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document (parsed once per process)."""
    text = resources.files(UI_PACKAGE).joinpath(SPEC_RESOURCE).read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    if not isinstance(spec, dict):
        raise ValueError(f"{SPEC_RESOURCE} is not a mapping")
    return spec


@functools.cache
def _spec_json() -> bytes:
    return json_text(openapi_spec()).encode("utf-8")


def register(app: QuartTrio, runtime: NodeRuntime, sampler: StatsSampler) -> None:
    docs_page = resources.files(UI_PACKAGE).joinpath(UI_FOLDER, "docs.html").read_bytes()

    @app.before_serving
    async def start_sampler() -> None:
        app.add_background_task(sampler.run)

    @app.after_serving
    async def stop_sampler() -> None:
        sampler.stop()

    @app.route(f"{API_PREFIX}/events", methods=["GET"])
    async def events() -> Response:
        after = parse_int(request.args.get("after"), "after", default=0, lo=0, hi=2**63 - 1)
        limit = parse_int(request.args.get("limit"), "limit", default=PAGE_MAX, lo=1, hi=PAGE_MAX)
        page = runtime.events.since(after, limit)
        return json_response({"node_id": runtime.node_id, **page.to_json()})

    @app.route(f"{API_PREFIX}/stats", methods=["GET"])
    async def stats() -> Response:
        after_ms = parse_optional_int(request.args.get("after_ms"), "after_ms", lo=0, hi=2**63 - 1)
        return json_response(sampler.to_json(after_ms))

    @app.route("/openapi.json", methods=["GET"])
    async def openapi() -> Response:
        return Response(_spec_json(), status=200, mimetype="application/json", headers=dict(NO_CACHE))

    @app.route("/docs", methods=["GET"])
    async def docs() -> Response:
        return Response(docs_page, status=200, content_type="text/html; charset=utf-8", headers=dict(NO_CACHE))
