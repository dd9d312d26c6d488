"""The largest message the source queue accepts still fits the dead-letter queue as a letter."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.lambda_events import sqs_event
from tests.conftest import AwsResources, Invoker
from thread_updater.validation import REASON_LIMIT
from tools.validate_template import load_sam_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_a_letter_for_the_largest_accepted_body_with_a_long_invalid_key_fits_the_dlq(
    invoke: Invoker, aws: AwsResources
) -> None:
    # Given the DLQ sized as the template sizes it
    queues = load_sam_template(TEMPLATE)["Resources"]
    source_limit = queues["SourceQueue"]["Properties"]["MaximumMessageSize"]
    dlq_limit = str(queues["DeadLetterQueue"]["Properties"]["MaximumMessageSize"])
    aws.sqs.set_queue_attributes(QueueUrl=aws.dlq_url, Attributes={"MaximumMessageSize": dlq_limit})
    # and a body of exactly the source queue's limit whose one metadata key is far too long and made
    # of 2-byte characters (each becomes a 6-byte escape in the letter's JSON)
    envelope = '{"thread_id":"t1","metadata":{"":"v"}}'
    key = "é" * ((source_limit - len(envelope)) // 2)
    body = json.dumps({"thread_id": "t1", "metadata": {key: "v"}}, ensure_ascii=False, separators=(",", ":"))
    assert len(body.encode()) == source_limit  # SQS counts UTF-8 bytes (moto counts characters)

    # When the function receives it
    response = invoke(sqs_event([body]))

    # Then it is dead-lettered as a validation error with the payload unchanged and a clipped reason
    assert response == {"batchItemFailures": []}
    [letter] = aws.dead_letters()
    assert letter["category"] == "validation"
    assert letter["payload"] == body
    assert "metadata." in letter["error"]
    assert len(letter["error"]) <= len("invalid update: ") + REASON_LIMIT
