"""Who may connect and call what, from the peer's verified client certificate (mTLS): a
service of the mesh may call every method; Envoy (and operators' tools) every method except the
contract's internal ones (service-to-service only; Envoy has no route to them either). Runs
before the token checks, so a stolen service token is useless without a service's key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc

from services.common.tls import ENVOY, OPERATOR, SERVICES, peer_identity


def allowed(identity: str | None, method: str, internal: Collection[str]) -> str | None:
    """None when `identity` may call `method`, else why not."""
    if identity in SERVICES:
        return None
    if identity in (ENVOY, OPERATOR):
        if method in internal:
            return f"{method} is internal: only services of the mesh may call it"
        return None
    if identity is None:
        return "the client certificate names no mesh identity"
    return f"peer {identity!r} is not a mesh identity"


class PeerCheckInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, internal_methods: Collection[str]) -> None:
        self._internal = frozenset(internal_methods)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._build(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def _check(self, context: grpc.aio.ServicerContext, method: str) -> None:
        reason = allowed(peer_identity(context), method, self._internal)
        if reason is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)

    def _build(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kinds = {"request_deserializer": handler.request_deserializer}
        kinds_out = {"response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def uu(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._check(context, method)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(uu, **kinds, **kinds_out)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def us(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await self._check(context, method)
                async for reply in _replies(inner_us(request, context)):
                    yield reply

            return grpc.unary_stream_rpc_method_handler(us, **kinds, **kinds_out)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def su(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._check(context, method)
                return await inner_su(requests, context)

            return grpc.stream_unary_rpc_method_handler(su, **kinds, **kinds_out)
        inner_ss = handler.stream_stream

        async def ss(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._check(context, method)
            async for reply in _replies(inner_ss(requests, context)):
                yield reply

        return grpc.stream_stream_rpc_method_handler(ss, **kinds, **kinds_out)


async def _replies(result: Any) -> AsyncIterator[Any]:
    """A streaming handler is an async generator, or a coroutine writing with context.write."""
    if hasattr(result, "__aiter__"):
        async for reply in result:
            yield reply
    else:
        await result
