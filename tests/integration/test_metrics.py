"""EMF metrics: what operators graph and alarm on, parsed from the function's stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from devstack.lambda_events import sqs_event
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import AwsResources, Invoker


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]


def totals(documents: list[dict[str, Any]]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = defaultdict(list)
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values[metric["Name"]] += value if isinstance(value, list) else [value]
    return values


def test_mixed_batch_emits_the_right_counts(
    invoke: Invoker, portkey: PortkeyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch with two applied updates, one invalid, one gone upstream, one that keeps failing
    portkey.always("thread_gone", Reply(status=404))
    portkey.always("thread_busy", Reply(status=503, headers={"Retry-After": "0"}))
    event = sqs_event(
        [
            {"thread_id": "thread_1"},
            {"thread_id": "thread_2"},
            "not json",
            {"thread_id": "thread_gone"},
            {"thread_id": "thread_busy"},
        ]
    )
    capsys.readouterr()

    # When it is processed
    invoke(event)

    # Then the EMF output parses, is namespaced and dimensioned, and carries exactly these counts
    documents = [document for document in emf_documents(capsys.readouterr().out) if "source" in document]
    assert documents
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "PortkeyThreadUpdater"
        assert sorted(directive["Dimensions"][0]) == ["service", "source"]
        assert document["source"] == "sqs"
    values = totals(documents)
    assert sum(values["UpdatesApplied"]) == 2
    assert sum(values["UpdatesDeadLettered"]) == 2
    assert sum(values["UpdatesRetried"]) == 1
    assert sum(values["UpdatesRejectedNotFound"]) == 1
    assert sum(values["HttpAttempts"]) == 2 + 1 + 3
    assert sum(values["RetryAfterWaits"]) == 2
    assert len(values["PortkeyLatency"]) == 4  # one per update that reached Portkey
    assert all(latency >= 0 for latency in values["PortkeyLatency"])


def test_a_large_batch_flushes_one_document_with_sampled_latency(
    invoke: Invoker, portkey: PortkeyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 250 updates that all reach Portkey
    event = sqs_event([{"thread_id": f"thread_{index}"} for index in range(250)])
    capsys.readouterr()

    # When they are processed
    invoke(event)

    # Then one EMF document carries the counts and at most 99 latency samples, and nothing warns
    captured = capsys.readouterr()
    documents = [document for document in emf_documents(captured.out) if "source" in document]
    assert len(documents) == 1
    values = totals(documents)
    assert values["UpdatesApplied"] == [250.0]
    assert 1 <= len(values["PortkeyLatency"]) <= 99
    assert "No application metrics" not in captured.err


COLD_CONTAINER = """
from devstack.lambda_events import LocalContext, sqs_event
from handler import lambda_handler

for _ in range(2):
    lambda_handler(sqs_event(["not json"]), LocalContext(timeout_s=30))
"""


def test_cold_start_is_counted_once_per_container_with_the_source_dimension(
    function_env: dict[str, str],
) -> None:
    # Given a fresh container (its own interpreter) that handles two SQS invocations
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", COLD_CONTAINER],
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # Then ColdStart is counted once, in the first invocation's document, with service and source
    documents = emf_documents(result.stdout)
    cold = [document for document in documents if "ColdStart" in document]
    assert len(documents) == 2
    assert cold == [documents[0]]
    assert cold[0]["ColdStart"] in (1, [1.0], 1.0)
    [dimensions] = cold[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert sorted(dimensions) == ["service", "source"]
    assert cold[0]["source"] == "sqs"


UNSUPPORTED_EVENT = """
import json
from devstack.lambda_events import LocalContext
from handler import lambda_handler

try:
    lambda_handler({"hello": "world"}, LocalContext(timeout_s=30))
except ValueError as error:
    print(json.dumps({"raised": type(error).__name__}))
"""


def test_an_invocation_that_fails_before_any_metric_writes_no_raw_warning() -> None:
    # Given a fresh container (its own interpreter, Python's default warning filters)
    root = Path(__file__).resolve().parents[2]
    # When its first invocation is an event of no supported shape, which fails before any metric
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", UNSUPPORTED_EVENT],
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # Then the invocation fails as it should, and nothing but JSON reaches the log stream: no raw
    # "UserWarning: No application metrics to publish" from Powertools' log_metrics
    assert '{"raised": "ValueError"}' in result.stdout.splitlines()
    assert "No application metrics" not in result.stdout + result.stderr
    assert [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("{")] == []


def test_a_404_counts_as_rejected_not_found_only_once_it_is_dead_lettered(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a thread that is gone upstream, and a DLQ that is gone too
    portkey.always("thread_gone", Reply(status=404))
    aws.sqs.delete_queue(QueueUrl=aws.dlq_url)
    event = sqs_event([{"thread_id": "thread_gone"}])
    capsys.readouterr()

    # When the update is delivered twice (handed back the first time, as the letter could not be written)
    first = invoke(event)
    aws.sqs.create_queue(QueueName=aws.dlq_url.rsplit("/", 1)[-1])
    second = invoke(event)

    # Then the 404 alarm's metric counts it once: for the delivery that dead-lettered it
    assert len(first["batchItemFailures"]) == 1
    assert second == {"batchItemFailures": []}
    values = totals([document for document in emf_documents(capsys.readouterr().out) if "source" in document])
    assert values["UpdatesRejectedNotFound"] == [0.0, 1.0]
