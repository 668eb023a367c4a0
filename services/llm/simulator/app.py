"""The simulator's aiohttp application: OpenAI routes under /v1, Azure OpenAI routes under
/openai, the Anthropic Messages API at /v1/messages (and /v1/models with anthropic-version)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.llm.simulator import anthropic_api, handlers
from services.llm.simulator.errors import Dialect, SimError, mask_key
from services.llm.simulator.state import CONFIG, STATE, SimulatorConfig, SimulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PUBLIC_PREFIX = "/v1/sim-files/"


def _check_auth(request: web.Request, dialect: Dialect) -> None:
    expected = request.app[CONFIG].api_key
    auth = request.headers.get("Authorization", "")
    bearer = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
    if dialect == "anthropic":
        given = request.headers.get("x-api-key") or bearer
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise SimError(401, "invalid x-api-key")
        return
    if dialect == "azure":
        given = request.headers.get("api-key") or bearer
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise SimError(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                "provide a valid key for an active subscription and use a correct regional API "
                "endpoint for your resource.",
                code="401",
            )
        if not request.query.get("api-version"):
            raise SimError(404, "Resource not found", code="404")
        return
    if not bearer:
        raise SimError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if not hmac.compare_digest(bearer.encode(), expected.encode()):
        raise SimError(
            401,
            f"Incorrect API key provided: {mask_key(bearer)}. You can find your API key in your "
            "simulator configuration.",
            code="invalid_api_key",
        )


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    dialect = handlers.dialect_of(request)
    try:
        if not request.path.startswith(_PUBLIC_PREFIX):
            _check_auth(request, dialect)
        return await handler(request)
    except SimError as err:
        return web.json_response(err.body(dialect), status=err.status, headers=err.headers)
    except web.HTTPNotFound:
        missing = SimError(404, f"Invalid URL ({request.method} {request.path})")
        return web.json_response(missing.body(dialect), status=404)
    except web.HTTPMethodNotAllowed:
        refused = SimError(405, f"Method not allowed ({request.method} {request.path})")
        return web.json_response(refused.body(dialect), status=405)


# -- routes ----------------------------------------------------------------------------------


async def _openai_chat(request: web.Request) -> web.StreamResponse:
    body = await handlers.json_body(request)
    return await handlers.chat_completions(request, "openai", body.get("model"))


async def _openai_embeddings(request: web.Request) -> web.StreamResponse:
    body = await handlers.json_body(request)
    return await handlers.embeddings(request, "openai", body.get("model"))


async def _openai_images(request: web.Request) -> web.StreamResponse:
    body = await handlers.json_body(request)
    return await handlers.images(request, "openai", body.get("model"))


async def _models(request: web.Request) -> web.StreamResponse:
    if handlers.dialect_of(request) == "anthropic":
        return await anthropic_api.list_models(request)
    return await handlers.list_models(request)


async def _openai_model(request: web.Request) -> web.StreamResponse:
    return await handlers.get_model(request, "openai")


async def _azure_chat(request: web.Request) -> web.StreamResponse:
    return await handlers.chat_completions(request, "azure", request.match_info["deployment"])


async def _azure_embeddings(request: web.Request) -> web.StreamResponse:
    return await handlers.embeddings(request, "azure", request.match_info["deployment"])


async def _azure_images(request: web.Request) -> web.StreamResponse:
    return await handlers.images(request, "azure", request.match_info["deployment"])


def create_app(config: SimulatorConfig) -> web.Application:
    app = web.Application(middlewares=[openai_errors], client_max_size=32 * 1024 * 1024)
    app[CONFIG] = config
    app[STATE] = SimulatorState()
    app.router.add_post("/v1/chat/completions", _openai_chat)
    app.router.add_post("/v1/embeddings", _openai_embeddings)
    app.router.add_post("/v1/images/generations", _openai_images)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/messages", anthropic_api.messages)
    app.router.add_get("/v1/models/{model}", _openai_model)
    app.router.add_get(_PUBLIC_PREFIX + "{name}.png", handlers.image_file)
    deployment = "/openai/deployments/{deployment}"
    app.router.add_post(deployment + "/chat/completions", _azure_chat)
    app.router.add_post(deployment + "/embeddings", _azure_embeddings)
    app.router.add_post(deployment + "/images/generations", _azure_images)
    app.router.add_get("/openai/models", handlers.list_models)
    return app


async def start_simulator(
    host: str,
    port: int,
    api_key: str,
    *,
    retry_after_seconds: int = 1,
    slow_response_seconds: float = 2.0,
    slow_chunk_seconds: float = 0.05,
) -> web.AppRunner:
    """Start serving on host:port (0 picks a free port; see bound_port). Stop with runner.cleanup()."""
    if not api_key:
        raise ValueError("the simulator needs an API key")
    config = SimulatorConfig(
        api_key=api_key,
        retry_after_seconds=retry_after_seconds,
        slow_response_seconds=slow_response_seconds,
        slow_chunk_seconds=slow_chunk_seconds,
    )
    # handler_cancellation: a client that goes away cancels its handler (streams stop at once).
    runner = web.AppRunner(
        create_app(config), handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])


def simulator_state(runner: web.AppRunner) -> SimulatorState:
    app = runner.app
    assert app is not None
    return app[STATE]
