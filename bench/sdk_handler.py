"""The baseline: a Modify Thread Lambda written the obvious way with the Portkey Python SDK.

One client per container, the secret read once from Secrets Manager, one record at a time,
failures handed back through ``batchItemFailures``. Benchmark-only (``portkey-ai`` is a
dev dependency in ``bench/requirements.txt``, never a runtime one).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from portkey_ai import Portkey

_client: Portkey | None = None


def _portkey() -> Portkey:
    global _client  # noqa: PLW0603 - the container-wide client, as a Lambda would keep it
    if _client is None:
        secret = json.loads(
            boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["PORTKEY_SECRET_ID"])[
                "SecretString"
            ]
        )
        _client = Portkey(
            api_key=secret["api_key"],
            virtual_key=secret.get("virtual_key"),
            base_url=os.environ["PORTKEY_BASE_URL"],
        )
    return _client


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    client = _portkey()
    failures = []
    for record in event["Records"]:
        try:
            update = json.loads(record["body"])
            client.beta.threads.update(update["thread_id"], metadata=update.get("metadata"))
        except Exception:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
