"""Fixtures of the DLQ tool's tests (helpers in ``tests.tooling.dlq_support``)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import AwsResources
from tests.tooling.dlq_support import Bus, Dlq, make_bus, queue_arn


@pytest.fixture
def paired(aws: AwsResources) -> None:
    """The test's source queue dead-letters into its DLQ (a redrive policy), as the template pairs them."""
    redrive = {"deadLetterTargetArn": queue_arn(aws.sqs, aws.dlq_url), "maxReceiveCount": "10"}
    aws.sqs.set_queue_attributes(QueueUrl=aws.queue_url, Attributes={"RedrivePolicy": json.dumps(redrive)})


@pytest.fixture
def dlq(aws: AwsResources, paired: None) -> Dlq:
    return Dlq(aws)


@pytest.fixture
def bus(aws: AwsResources) -> Bus:
    return make_bus(aws)
