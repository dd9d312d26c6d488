"""What each ``events/`` sample must produce, shared by the in-process and the artifact tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import AwsResources

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return document


def check_sqs_batch(event: dict[str, Any], payload: Any, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    """Two valid updates applied, the three invalid messages dead-lettered, nothing retried."""
    assert payload == {"batchItemFailures": []}
    assert sorted(request.thread_id or "" for request in portkey.requests) == [
        "thread_abc123",
        "thread_def456",
    ]
    letters = aws.dead_letters()
    assert sorted(letter["message_id"] for letter in letters) == sorted(
        record["messageId"] for record in event["Records"][2:]
    )
    assert {letter["category"] for letter in letters} == {"validation"}


def check_eventbridge(
    event: dict[str, Any], payload: Any, portkey: PortkeyStandIn, aws: AwsResources | None = None
) -> None:
    """Applied with exactly the detail's fields; the invocation returns nothing."""
    assert payload is None
    [request] = portkey.requests
    assert request.thread_id == event["detail"]["thread_id"]
    assert request.json == {key: value for key, value in event["detail"].items() if key != "thread_id"}


def check_eventbridge_via_sqs(
    event: dict[str, Any], payload: Any, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    """The valid detail applied, the invalid one dead-lettered with its original SQS body."""
    assert payload == {"batchItemFailures": []}
    [request] = portkey.requests
    assert request.status == 200
    [letter] = aws.dead_letters()
    assert letter["message_id"] == event["Records"][1]["messageId"]
    assert letter["payload"] == event["Records"][1]["body"]


def check_sqs_conversation(
    event: dict[str, Any], payload: Any, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    """Two conversation updates applied (metadata only, no OpenAI-Beta); a conversation update with
    tool_resources and one naming a thread and a conversation dead-lettered as invalid."""
    assert payload == {"batchItemFailures": []}
    assert sorted(request.conversation_id or "" for request in portkey.requests) == [
        "conv_abc123",
        "conv_def456",
    ]
    assert all("openai-beta" not in request.headers for request in portkey.requests)
    assert [request.json for request in sorted(portkey.requests, key=lambda r: r.path)] == [
        {"metadata": {"stage": "reviewed", "owner": "ops"}},
        {"metadata": {"migrated_from": "thread_def456"}},  # the version orders, it is never sent
    ]
    letters = {letter["message_id"]: letter for letter in aws.dead_letters()}
    invalid = [record["messageId"] for record in event["Records"][2:]]
    assert sorted(letters) == sorted(invalid)
    assert {letter["category"] for letter in letters.values()} == {"validation"}
    assert "conversations have no tool_resources" in letters[invalid[0]]["error"]
    assert "exactly one of thread_id or conversation_id" in letters[invalid[1]]["error"]


def check_eventbridge_conversation(
    event: dict[str, Any], payload: Any, portkey: PortkeyStandIn, aws: AwsResources | None = None
) -> None:
    """A ModifyConversation event: applied to the conversation with its metadata, no OpenAI-Beta."""
    assert event["detail-type"] == "ModifyConversation"
    assert payload is None
    [request] = portkey.requests
    assert request.conversation_id == event["detail"]["conversation_id"]
    assert request.json == {"metadata": event["detail"]["metadata"]}
    assert "openai-beta" not in request.headers


Check = Callable[[dict[str, Any], Any, PortkeyStandIn, AwsResources], None]
CHECKS: dict[str, Check] = {
    "sqs-batch.json": check_sqs_batch,
    "eventbridge.json": check_eventbridge,
    "eventbridge-via-sqs.json": check_eventbridge_via_sqs,
    "sqs-conversation.json": check_sqs_conversation,
    "eventbridge-conversation.json": check_eventbridge_conversation,
}
"""What each event sample must produce, by file name: every file in ``events/`` but ``NOT_EVENTS``."""
NOT_EVENTS = {"env.json"}  # the function's environment for sam local invoke (tests/infra/test_template.py)


def sample_names() -> set[str]:
    """Every file in ``events/`` that is an event."""
    return {path.name for path in EVENTS.iterdir() if path.is_file()} - NOT_EVENTS
