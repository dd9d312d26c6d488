"""Parser models for update messages and the envelopes they arrive in.

The message schema is Portkey's ``ModifyThreadRequest`` plus the ``thread_id`` it targets.
Models are strict: a number is not a string, unknown fields are errors, so a typo is
dead-lettered with a reason instead of being silently dropped by the provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from thread_updater.validation import clip, describe_validation_error

THREAD_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
MODIFY_THREAD_DETAIL_TYPE = "ModifyThread"

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


class ThreadUpdate(_Strict):
    """One update: the thread to modify, the fields to replace, and where it stands in the thread's order.

    ``version`` orders the updates of one thread (newest wins per field); it is never sent to Portkey.
    """

    thread_id: Annotated[str, StringConstraints(pattern=THREAD_ID_PATTERN)]
    version: Version | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    tool_resources: ToolResources | None = None

    def request_body(self) -> dict[str, Any]:
        """The Modify Thread body: only the fields the message set; an explicit null stays null."""
        return self.model_dump(mode="json", exclude={"thread_id", "version"}, exclude_unset=True)

    @property
    def fields(self) -> frozenset[str]:
        """The thread fields this update sets (an explicit null sets a field too)."""
        return frozenset(name for name in UPDATE_FIELDS if name in self.model_fields_set)


class ModifyThreadEvent(EventBridgeModel):
    """An EventBridge event whose ``detail`` is an update (delivered directly or inside an SQS body)."""

    detail: ThreadUpdate


class UpdateSqsRecord(SqsRecordModel):
    """An SQS record as Lambda delivers it; the body is parsed separately so a bad body is a
    dead-letter, not a failed envelope."""


class InvalidUpdate(Exception):
    """The message can never be applied: a readable reason, no HTTP call, straight to the DLQ."""


@dataclass(frozen=True, kw_only=True)
class ParsedUpdate:
    update: ThreadUpdate
    event_time_ms: int | None = None  # the EventBridge event's time, when the update came in one


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a time without a zone is UTC, as EventBridge and SQS mean it."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def _looks_like_eventbridge(document: object) -> bool:
    return isinstance(document, dict) and "detail-type" in document and "detail" in document


def parse_update_document(document: object) -> ParsedUpdate:
    """Validate a decoded message: a bare update, or an EventBridge event carrying one."""
    try:
        if _looks_like_eventbridge(document):
            event = ModifyThreadEvent.model_validate(document)
            if event.detail_type != MODIFY_THREAD_DETAIL_TYPE:
                raise InvalidUpdate(
                    f"EventBridge detail-type must be {MODIFY_THREAD_DETAIL_TYPE!r}, "
                    f"got {clip(repr(event.detail_type), 80)}"
                )
            return ParsedUpdate(update=event.detail, event_time_ms=epoch_ms(event.time))
        if not isinstance(document, dict):
            raise InvalidUpdate(f"message must be a JSON object, got {type(document).__name__}")
        return ParsedUpdate(update=ThreadUpdate.model_validate(document))
    except ValidationError as error:
        raise InvalidUpdate(f"invalid update: {describe_validation_error(error)}") from None


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
