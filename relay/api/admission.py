"""What every request that names an agent and an operation must pass, calls and jobs alike.

The order is part of the contract: a caller learns nothing it is not granted. Credentials come
first (the caller's own module), then the grant for the agent (403), whether the operation
exists (404), the grant for the operation (403), then the body: size (413), media type (415)
and arguments (422).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError
from starlette.types import Receive

from protocol.errors import ErrorCode
from protocol.operations import CATALOGUE, Operation
from protocol.operations.validation import field_errors
from relay.problems import Problem
from relay.store.records import ApiKeyRecord


def authorize(key: ApiKeyRecord, agent: str, operation_name: str) -> Operation:
    """The catalogue entry of an operation this key may run at this agent, or a problem."""
    if not key.allows_agent(agent):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this agent")
    operation = CATALOGUE.get(operation_name)
    if operation is None:
        raise Problem(
            ErrorCode.UNKNOWN_OPERATION,
            f"unknown operation {operation_name[:64]!r}; see /openapi.json for the catalogue",
        )
    if not key.allows_operation(operation_name):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this operation")
    return operation


async def read_arguments(receive: Receive, headers: Mapping[bytes, str], limit: int) -> bytes:
    """The JSON body (``{}`` when empty), read once from the raw ASGI ``receive``."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Problem(ErrorCode.PAYLOAD_TOO_LARGE, f"the body may be at most {limit} bytes")
    content_type = headers.get(b"content-type", "application/json")
    if not content_type.startswith("application/json"):
        raise Problem(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the arguments as application/json")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise Problem(ErrorCode.CANCELLED, "the caller disconnected")
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise Problem(ErrorCode.PAYLOAD_TOO_LARGE, f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body if body.strip() else b"{}"


def validate_arguments(operation: Operation, body: bytes) -> None:
    """Validate once, straight from bytes, with the operation's catalogue model."""
    try:
        operation.args.model_validate_json(body)
    except ValidationError as exc:
        raise Problem(
            ErrorCode.INVALID_ARGUMENTS,
            f"the arguments of {operation.name} are invalid",
            errors=field_errors(exc),
        ) from None
