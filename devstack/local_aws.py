"""The function's AWS side on this machine: moto in server mode with the template's resources.

A source queue with a redrive policy to the DLQ, the Portkey secret, the per-thread state table
(DynamoDB), and an EventBridge bus whose ``ModifyThread`` rule targets the source queue. boto3
reaches it through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_sqs import SQSClient
from mypy_boto3_sqs.literals import QueueAttributeNameType

from devstack.moto_sqs import behave_like_sqs

REGION = "us-east-1"
EVENT_SOURCE = "com.example.threads"
_EVENT_FIELDS = ("id", "time", "detail-type", "source", "account", "region", "resources", "detail")
_WHOLE_EVENT_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, '
    '"detail": <detail>}'
)
LOCAL_AWS_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}


@dataclass(frozen=True)
class LocalResources:
    endpoint: str
    queue_url: str
    dlq_url: str
    secret_id: str
    bus_name: str
    max_receive_count: int
    state_table: str | None = None


def queue_arn(sqs: SQSClient, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


@contextmanager
def moto_server() -> Iterator[str]:
    """moto on a free loopback port, with ``AWS_ENDPOINT_URL`` and fake credentials set meanwhile."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # moto's DEBUG lines (DynamoDB expression parsing) cost more than the calls they describe
    logging.getLogger("moto").setLevel(logging.INFO)
    behave_like_sqs()  # concurrent deletes and FIFO hand-backs as SQS does them (see devstack/moto_sqs.py)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in [*LOCAL_AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**LOCAL_AWS_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        yield endpoint
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_resources(
    endpoint: str,
    secret: Mapping[str, Any],
    *,
    fifo: bool = False,
    max_receive_count: int = 3,
    visibility_timeout_s: int = 1,
    state_table: bool = True,
) -> LocalResources:
    """The template's queues, secret, rule and state table. Visibility is short so retries come back
    quickly."""
    suffix = uuid.uuid4().hex[:8]
    sqs: SQSClient = boto3.client("sqs")
    fifo_attributes: dict[QueueAttributeNameType, str] = (
        {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    )
    name_end = ".fifo" if fifo else ""
    dlq_url = sqs.create_queue(
        QueueName=f"thread-updates-dlq-{suffix}{name_end}", Attributes=fifo_attributes
    )["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": str(max_receive_count)}
    queue_url = sqs.create_queue(
        QueueName=f"thread-updates-{suffix}{name_end}",
        Attributes={
            **fifo_attributes,
            # As in template.yaml: updates replace state, so no content-based deduplication on the
            # source queue; producers send MessageDeduplicationId.
            **({"ContentBasedDeduplication": "false"} if fifo else {}),
            "VisibilityTimeout": str(visibility_timeout_s),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    secret_id = f"portkey-thread-updater-{suffix}"
    boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString=json.dumps(secret))
    events = boto3.client("events")
    bus_name = f"threads-{suffix}"
    events.create_event_bus(Name=bus_name)
    events.put_rule(
        Name="modify-thread",
        EventBusName=bus_name,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": ["ModifyThread"]}),
    )
    target: dict[str, Any] = {
        "Id": "source-queue",
        "Arn": queue_arn(sqs, queue_url),
        # The whole event, as real EventBridge delivers it: moto's default delivery leaves out
        # "account", which the function's EventBridge model (rightly) requires.
        "InputTransformer": {
            "InputPathsMap": {name: f"$.{name}" for name in _EVENT_FIELDS},
            "InputTemplate": _WHOLE_EVENT_TEMPLATE,
        },
    }
    if fifo:
        target["SqsParameters"] = {"MessageGroupId": "eventbridge"}
    events.put_targets(Rule="modify-thread", EventBusName=bus_name, Targets=[target])  # type: ignore[list-item]
    table = create_state_table(f"thread-state-{suffix}") if state_table else None
    return LocalResources(endpoint, queue_url, dlq_url, secret_id, bus_name, max_receive_count, table)


def create_state_table(name: str) -> str:
    """The per-thread state table as the template declares it: partition key ``thread_id``, on demand."""
    dynamodb: DynamoDBClient = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def function_environment(resources: LocalResources, base_url: str, **overrides: str) -> dict[str, str]:
    """The variables the template gives the function, pointed at the local resources."""
    return {
        "PORTKEY_SECRET_ID": resources.secret_id,
        "PORTKEY_BASE_URL": base_url,
        "DLQ_URL": resources.dlq_url,
        "MAX_ATTEMPTS": "3",
        "MAX_CONCURRENCY": "16",
        "POWERTOOLS_SERVICE_NAME": "portkey-thread-updater",
        "POWERTOOLS_METRICS_NAMESPACE": "PortkeyThreadUpdater",
        "POWERTOOLS_PARAMETERS_MAX_AGE": "300",
        **({"THREAD_STATE_TABLE": resources.state_table} if resources.state_table else {}),
        **overrides,
    }
