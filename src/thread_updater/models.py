"""Parser models for update messages and the envelopes they arrive in.

Two updates: a thread's (Portkey's ``ModifyThreadRequest`` plus the ``thread_id`` it targets) and a
conversation's (``{"metadata": ...}`` plus its ``conversation_id``); a message names exactly one id.
Models are strict: a number is not a string, unknown fields are errors, so a typo is
dead-lettered with a reason instead of being silently dropped by the provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from thread_updater.validation import clip, describe_validation_error

THREAD_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"

MAX_VERSION = 2**53 - 1  # the largest integer every JSON producer (JavaScript included) keeps exact
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]
UPDATE_FIELDS = ("metadata", "tool_resources")
MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CodeInterpreterResources(_Strict):
    file_ids: Annotated[list[str], Field(max_length=20)] = []


class FileSearchResources(_Strict):
    vector_store_ids: Annotated[list[str], Field(max_length=1)] = []


class ToolResources(_Strict):
    """Each tool may be left out but not set to null: the spec lets only ``tool_resources`` be null."""

    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None

    @field_validator("code_interpreter", "file_search", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # only reached when the message sets the field: a default is not validated
            raise ValueError("must be an object when present (only tool_resources itself may be null)")
        return value


class TargetKind(StrEnum):
    """What an update modifies: an Assistants thread, or its successor, a conversation."""

    THREAD = "thread"
    CONVERSATION = "conversation"


@dataclass(frozen=True, kw_only=True)
class Target:
    """The thread or conversation an update modifies: its request path, log field and state key."""

    kind: TargetKind
    id: str

    @property
    def id_field(self) -> str:
        """The message field, log field and dead-letter field that names it."""
        return f"{self.kind.value}_id"

    @property
    def path(self) -> str:
        """The Modify request's path below the base URL. The id is validated against
        ``^[A-Za-z0-9_-]+$`` already; quoting anyway keeps the path a single segment whatever a future
        model change lets through."""
        return f"{self.kind.value}s/{quote(self.id, safe='')}"

    @property
    def state_key(self) -> str:
        """The state table's partition key (``thread_id``, a String, unchanged so that a deploy never
        replaces the table): a thread's id as it always was; a conversation's id behind a prefix with a
        character no id may hold, so a conversation can never share an item with a thread."""
        return self.id if self.kind is TargetKind.THREAD else f"conversation:{self.id}"

    @property
    def lane(self) -> str:
        return f"{self.kind.value}:{self.id}"


Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]


class ThreadUpdate(_Strict):
    """One thread update: the thread, the fields to set, and where it stands in the thread's order.

    ``version`` orders the updates of one thread (newest wins per key and field); it is never sent.
    """

    thread_id: Annotated[str, StringConstraints(pattern=THREAD_ID_PATTERN)]
    version: Version | None = None
    metadata: Metadata | None = None
    tool_resources: ToolResources | None = None

    @property
    def target(self) -> Target:
        return Target(kind=TargetKind.THREAD, id=self.thread_id)

    def request_body(self) -> dict[str, Any]:
        """The Modify Thread body: only the fields the message set; an explicit null stays null."""
        return self.model_dump(mode="json", exclude={"thread_id", "version"}, exclude_unset=True)

    @property
    def fields(self) -> frozenset[str]:
        """The thread fields this update sets (an explicit null sets a field too)."""
        return frozenset(name for name in UPDATE_FIELDS if name in self.model_fields_set)


class ConversationUpdate(_Strict):
    """One conversation update: metadata only (a conversation has no ``tool_resources``).

    ``metadata`` is required and must be an object: the API accepts null, but what null does to a
    conversation's metadata is documented nowhere, so no update is allowed to find out.
    """

    conversation_id: Annotated[str, StringConstraints(pattern=THREAD_ID_PATTERN)]
    version: Version | None = None
    metadata: Metadata

    @property
    def target(self) -> Target:
        return Target(kind=TargetKind.CONVERSATION, id=self.conversation_id)

    def request_body(self) -> dict[str, Any]:
        """The Modify Conversation body: exactly ``{"metadata": {...}}``."""
        return {"metadata": dict(self.metadata)}

    @property
    def fields(self) -> frozenset[str]:
        return frozenset({"metadata"})


Update = ThreadUpdate | ConversationUpdate
"""An update of either target; both answer ``target``, ``version``, ``fields`` and ``request_body()``."""

_DETAIL_TYPES = {"ModifyThread": TargetKind.THREAD, "ModifyConversation": TargetKind.CONVERSATION}


class UpdateSqsRecord(SqsRecordModel):
    """An SQS record as Lambda delivers it; the body is parsed separately so a bad body is a
    dead-letter, not a failed envelope."""


class InvalidUpdate(Exception):
    """The message can never be applied: a readable reason, no HTTP call, straight to the DLQ."""


@dataclass(frozen=True, kw_only=True)
class ParsedUpdate:
    update: Update
    event_time_ms: int | None = None  # the EventBridge event's time, when the update came in one


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a time without a zone is UTC, as EventBridge and SQS mean it."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def _looks_like_eventbridge(document: object) -> bool:
    return isinstance(document, dict) and "detail-type" in document and "detail" in document


def _target_kind(document: dict[str, Any]) -> TargetKind:
    """Which update a message is, from the id it names; exactly one of the two ids is allowed."""
    has_thread, has_conversation = "thread_id" in document, "conversation_id" in document
    if has_thread and has_conversation:
        raise InvalidUpdate("an update names exactly one of thread_id or conversation_id, not both")
    if has_conversation:
        if "tool_resources" in document:
            raise InvalidUpdate(
                "conversations have no tool_resources (a conversation update carries metadata only)"
            )
        return TargetKind.CONVERSATION
    if not has_thread:
        raise InvalidUpdate("an update needs thread_id or conversation_id")
    return TargetKind.THREAD


def _update_of(document: dict[str, Any], *, location: str = "") -> Update:
    kind = _target_kind(document)
    model = ThreadUpdate if kind is TargetKind.THREAD else ConversationUpdate
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise InvalidUpdate(f"invalid update: {describe_validation_error(error, prefix=location)}") from None


def _event_update(document: dict[str, Any]) -> ParsedUpdate:
    """An EventBridge event: first whether it is one of ours at all, then its envelope, then its detail."""
    detail_type = document.get("detail-type")
    expected = _DETAIL_TYPES.get(detail_type) if isinstance(detail_type, str) else None
    if expected is None:
        raise InvalidUpdate(
            "not an update event: EventBridge detail-type must be 'ModifyThread' or 'ModifyConversation', "
            f"got {clip(repr(detail_type), 80)}"
        )
    try:
        envelope = EventBridgeModel.model_validate(document)
    except ValidationError as error:
        raise InvalidUpdate(f"invalid EventBridge envelope: {describe_validation_error(error)}") from None
    detail = document["detail"]
    if not isinstance(detail, dict):
        raise InvalidUpdate(f"EventBridge detail must be a JSON object, got {type(detail).__name__}")
    update = _update_of(detail, location="detail")
    if update.target.kind is not expected:
        raise InvalidUpdate(
            f"detail-type {detail_type!r} cannot carry a {update.target.kind.value} update: use "
            f"{'ModifyThread' if update.target.kind is TargetKind.THREAD else 'ModifyConversation'}"
        )
    event_time_ms = epoch_ms(envelope.time)
    if update.version is None and not 1 <= event_time_ms <= MAX_VERSION:
        raise InvalidUpdate(
            "the EventBridge time gives no valid version (it must be after 1970-01-01); set 'version'"
        )
    return ParsedUpdate(update=update, event_time_ms=event_time_ms)


def parse_update_document(document: object) -> ParsedUpdate:
    """Validate a decoded message: a bare update, or an EventBridge event carrying one."""
    if _looks_like_eventbridge(document):
        assert isinstance(document, dict)
        return _event_update(document)
    if not isinstance(document, dict):
        raise InvalidUpdate(f"message must be a JSON object, got {type(document).__name__}")
    return ParsedUpdate(update=_update_of(document))


TOO_DEEPLY_NESTED = "body is nested too deeply to be an update"


def parse_sqs_body(body: str) -> ParsedUpdate:
    """Decode and validate an SQS message body."""
    try:
        document = json.loads(body)
    except RecursionError:
        # Where the decoder gives up depends on the stack depth it runs at; no update nests
        # more than a few levels, so any body this deep is invalid whatever the exact cut-off.
        raise InvalidUpdate(TOO_DEEPLY_NESTED) from None
    except ValueError as error:
        raise InvalidUpdate(f"body is not valid JSON: {str(error)[:200]}") from None
    return parse_update_document(document)
