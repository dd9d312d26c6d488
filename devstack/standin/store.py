"""The stand-in's stores: Assistants v2 ThreadObjects, conversations, and OpenAI-style validation of updates.

What Portkey / OpenAI would store, and what they would refuse (with the error envelope they send).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Literal, NamedTuple, get_args

__all__ = [
    "METADATA_SEMANTICS",
    "Answer",
    "ApiError",
    "MetadataSemantics",
    "ThreadStore",
    "conversation_not_found",
    "default_error",
    "error_answer",
    "merged_metadata",
    "new_conversation",
    "new_thread",
    "not_found",
    "parse_json",
    "validate_conversation_update",
    "validate_update",
]

# How the upstream writes an update's metadata. ``merge``: the keys the update names are set, keys it
# leaves out stay (OpenAI was observed to behave so: a key cannot be deleted, an empty string stays a
# key). ``replace``: the update's map replaces the stored one whole (a self-hosted backend may).
MetadataSemantics = Literal["merge", "replace"]
METADATA_SEMANTICS: tuple[MetadataSemantics, ...] = get_args(MetadataSemantics)

_UPDATE_FIELDS = ("metadata", "tool_resources")
_METADATA_MAX_PAIRS = 16
_METADATA_KEY_MAX = 64
_METADATA_VALUE_MAX = 512
_TOOL_RESOURCE_LISTS = {
    "code_interpreter": ("file_ids", 20),
    "file_search": ("vector_store_ids", 1),
}

_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: ("Not found.", "invalid_request_error", None),
    409: ("Another request is modifying this thread.", "invalid_request_error", "conflict"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


class ApiError(Exception):
    """An OpenAI-style error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_ = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON error envelope."""
        return {
            "error": {"message": self.message, "type": self.type_, "param": self.param, "code": self.code}
        }


class Answer(NamedTuple):
    """What to send back: status, body bytes and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str]


def error_answer(error: ApiError) -> Answer:
    """The answer carrying ``error``'s JSON envelope."""
    return Answer(error.status, json.dumps(error.body()).encode("utf-8"), {})


def default_error(status: int) -> dict[str, Any]:
    """The error envelope Portkey / OpenAI send with ``status`` when nothing more specific applies."""
    message, type_, code = _DEFAULT_ERRORS.get(status, ("", "server_error", None))
    if not message:
        try:
            message = HTTPStatus(status).phrase + "."
        except ValueError:
            message = f"HTTP {status}."
        type_ = "invalid_request_error" if status < 500 else "server_error"
    return ApiError(status, message, type_=type_, code=code).body()


def not_found(thread_id: str) -> ApiError:
    """The 404 for a thread that does not exist."""
    return ApiError(404, f"No thread found with id '{thread_id}'.", param=None)


def conversation_not_found(conversation_id: str) -> ApiError:
    """The 404 OpenAI sends for a conversation that does not exist."""
    return ApiError(404, f"Conversation with id '{conversation_id}' not found.", param=None)


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid_type(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_json_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _too_many_keys(count: int, *, merged: bool) -> ApiError:
    held = "the thread would hold" if merged else "got an object with"
    return ApiError(
        400,
        f"Invalid 'metadata': too many properties. Expected an object with at most "
        f"{_METADATA_MAX_PAIRS} properties, but {held} {count} properties instead.",
        param="metadata",
        code="object_above_max_properties",
    )


def _validate_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _invalid_type("metadata", "an object", metadata)
    if len(metadata) > _METADATA_MAX_PAIRS:
        raise _too_many_keys(len(metadata), merged=False)
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY_MAX:
            raise ApiError(
                400,
                f"Invalid 'metadata': key too long. Expected keys with maximum length "
                f"{_METADATA_KEY_MAX}, but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise _invalid_type(f"metadata.{key}", "a string", value)
        if len(value) > _METADATA_VALUE_MAX:
            raise ApiError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{_METADATA_VALUE_MAX}, but got a string with length {len(value)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )


def _validate_tool_resources(tool_resources: Any) -> None:
    if tool_resources is None:
        return
    if not isinstance(tool_resources, dict):
        raise _invalid_type("tool_resources", "an object", tool_resources)
    for tool, resources in tool_resources.items():
        if tool not in _TOOL_RESOURCE_LISTS:
            raise ApiError(
                400, f"Unrecognized request argument supplied: tool_resources.{tool}", param="tool_resources"
            )
        param = f"tool_resources.{tool}"
        if not isinstance(resources, dict):  # null too: only tool_resources itself may be null
            raise _invalid_type(param, "an object", resources)
        list_name, max_items = _TOOL_RESOURCE_LISTS[tool]
        for name, ids in resources.items():
            if name != list_name:
                raise ApiError(400, f"Unrecognized request argument supplied: {param}.{name}", param=param)
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise _invalid_type(f"{param}.{name}", "an array of strings", ids)
            if len(ids) > max_items:
                raise ApiError(
                    400,
                    f"Invalid '{param}.{name}': array too long. Expected an array with maximum length "
                    f"{max_items}, but got an array with length {len(ids)} instead.",
                    param=f"{param}.{name}",
                    code="array_above_max_length",
                )


def validate_update(payload: Any) -> dict[str, Any]:
    """Check a Modify Thread body; return it as the update to apply."""
    if not isinstance(payload, dict):
        raise ApiError(
            400, f"Invalid type for 'body': expected an object, but got {_json_type_name(payload)}."
        )
    unknown = [name for name in payload if name not in _UPDATE_FIELDS]
    if len(unknown) == 1:
        raise ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
    if unknown:
        raise ApiError(400, f"Unrecognized request arguments supplied: {', '.join(unknown)}")
    _validate_metadata(payload.get("metadata"))
    _validate_tool_resources(payload.get("tool_resources"))
    return payload


def validate_conversation_update(payload: Any) -> dict[str, Any]:
    """Check an Update Conversation body (``metadata`` only, required, may be null); return it."""
    if not isinstance(payload, dict):
        raise ApiError(
            400, f"Invalid type for 'body': expected an object, but got {_json_type_name(payload)}."
        )
    unknown = [name for name in payload if name != "metadata"]
    if unknown:
        raise ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
    if "metadata" not in payload:
        raise ApiError(
            400,
            "Missing required parameter: 'metadata'.",
            param="metadata",
            code="missing_required_parameter",
        )
    _validate_metadata(payload["metadata"])
    return payload


def parse_json(body: bytes) -> Any:
    """Strict JSON, as OpenAI reads it: ``NaN`` and ``Infinity`` are not JSON."""

    def reject_constant(name: str) -> Any:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(body.decode("utf-8"), parse_constant=reject_constant)


def merged_metadata(
    stored: dict[str, Any] | None, update: dict[str, Any] | None, semantics: MetadataSemantics
) -> dict[str, Any] | None:
    """The metadata an object holds after a (validated) update's ``metadata``.

    ``merge``: the stored keys, then the update's keys over them (``None``: no change); more than 16
    keys in the merged map is refused with the 400 naming the limit, the stored keys unchanged.
    ``replace``: the update's map (``None`` too), as the store always did.
    """
    if semantics == "replace":
        return copy.deepcopy(update)
    merged = {**(stored or {}), **copy.deepcopy(update or {})}
    if len(merged) > _METADATA_MAX_PAIRS:
        raise _too_many_keys(len(merged), merged=True)
    return merged


def new_thread(thread_id: str) -> dict[str, Any]:
    """A fresh ThreadObject, as Portkey creates it."""
    return {
        "id": thread_id,
        "object": "thread",
        "created_at": int(time.time()),
        "metadata": {},
        "tool_resources": {},
    }


def new_conversation(conversation_id: str) -> dict[str, Any]:
    """A fresh conversation object, as OpenAI creates it (no tool_resources)."""
    return {"id": conversation_id, "object": "conversation", "created_at": int(time.time()), "metadata": {}}


class ThreadStore:
    """ThreadObjects (or, with ``new=new_conversation``, conversations) by id, in memory. Every method
    hands out copies, never the stored dicts.

    ``lock`` is the stand-in's own, so a reset clears threads, scripts and records at once.
    ``semantics``: how an update's ``metadata`` is written (:data:`MetadataSemantics`);
    ``tool_resources`` is replaced whole under both.
    """

    def __init__(
        self,
        lock: threading.Condition,
        semantics: MetadataSemantics = "merge",
        *,
        new: Callable[[str], dict[str, Any]] = new_thread,
    ) -> None:
        if semantics not in METADATA_SEMANTICS:
            raise ValueError(f"metadata semantics must be one of {METADATA_SEMANTICS}, not {semantics!r}")
        self._lock = lock
        self._new = new
        self._threads: dict[str, dict[str, Any]] = {}
        self.semantics: MetadataSemantics = semantics

    def seed(
        self, thread_id: str, metadata: dict[str, Any] | None, tool_resources: dict[str, Any] | None
    ) -> None:
        """Create or overwrite a thread (``None`` fields start as ``{}`` like a new thread)."""
        thread = new_thread(thread_id)
        thread["metadata"] = copy.deepcopy(metadata) if metadata is not None else {}
        thread["tool_resources"] = copy.deepcopy(tool_resources) if tool_resources is not None else {}
        with self._lock:
            self._threads[thread_id] = thread

    def get(self, thread_id: str) -> dict[str, Any] | None:
        """A copy of the stored thread, or ``None``."""
        with self._lock:
            stored = self._threads.get(thread_id)
            return copy.deepcopy(stored) if stored is not None else None

    def apply(self, thread_id: str, update: dict[str, Any], *, create: bool = True) -> dict[str, Any] | None:
        """Write ``update`` (creating the thread if ``create``); the thread after it, or ``None``.

        Raises the upstream's :class:`ApiError` (nothing written) when the merged metadata would hold
        more keys than the limit."""
        with self._lock:
            stored = self._threads.get(thread_id)
            if stored is None and not create:
                return None
            after = copy.deepcopy(stored) if stored is not None else self._new(thread_id)
            written = copy.deepcopy(update)
            if "metadata" in update:
                written["metadata"] = merged_metadata(after["metadata"], update["metadata"], self.semantics)
            after.update(written)
            self._threads[thread_id] = after
            return copy.deepcopy(after)

    def preview(self, thread_id: str, update: dict[str, Any]) -> dict[str, Any]:
        """The stored thread as it is; for an unknown one, a new thread with ``update`` (not stored)."""
        with self._lock:
            stored = self._threads.get(thread_id)
            if stored is not None:
                return copy.deepcopy(stored)
        thread = self._new(thread_id)
        thread.update(copy.deepcopy(update))
        return thread

    def clear(self) -> None:
        """Forget every thread."""
        with self._lock:
            self._threads.clear()
