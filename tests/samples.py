"""What each ``events/`` sample must produce, shared by the in-process and the artifact tests."""

from __future__ import annotations

import json
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


def check_eventbridge(event: dict[str, Any], payload: Any, portkey: PortkeyStandIn) -> None:
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
