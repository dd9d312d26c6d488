"""The ``events/`` samples users pass to ``sam local invoke`` behave as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import AwsResources, Invoker

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return document


def test_sqs_batch_sample(invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    # Given the SQS sample (two valid updates, three invalid messages)
    event = load("sqs-batch.json")

    # When it is invoked
    response = invoke(event)

    # Then the valid ones are applied and the invalid ones dead-lettered; nothing is retried
    assert response == {"batchItemFailures": []}
    assert sorted(request.thread_id or "" for request in portkey.requests) == [
        "thread_abc123",
        "thread_def456",
    ]
    letters = aws.dead_letters()
    assert sorted(letter["message_id"] for letter in letters) == sorted(
        record["messageId"] for record in event["Records"][2:]
    )
    assert {letter["category"] for letter in letters} == {"validation"}


def test_eventbridge_sample(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    event = load("eventbridge.json")
    assert invoke(event) is None
    [request] = portkey.requests
    assert request.json == {key: value for key, value in event["detail"].items() if key != "thread_id"}


def test_eventbridge_via_sqs_sample(invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    event = load("eventbridge-via-sqs.json")
    assert invoke(event) == {"batchItemFailures": []}
    assert len(portkey.requests) == 1
    [letter] = aws.dead_letters()
    assert letter["message_id"] == event["Records"][1]["messageId"]
    assert letter["payload"] == event["Records"][1]["body"]
