"""The ``events/`` samples users pass to ``sam local invoke`` behave as documented."""

from __future__ import annotations

from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import AwsResources, Invoker
from tests.samples import check_eventbridge, check_eventbridge_via_sqs, check_sqs_batch, load


def test_sqs_batch_sample(invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    event = load("sqs-batch.json")
    check_sqs_batch(event, invoke(event), portkey, aws)


def test_eventbridge_sample(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    event = load("eventbridge.json")
    check_eventbridge(event, invoke(event), portkey)


def test_eventbridge_via_sqs_sample(invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    event = load("eventbridge-via-sqs.json")
    check_eventbridge_via_sqs(event, invoke(event), portkey, aws)
