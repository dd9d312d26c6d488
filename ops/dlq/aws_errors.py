"""Every AWS error as one line: which queue or bus, what went wrong, and what to check."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

_MISSING = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFoundException"}
)
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "KMS.AccessDeniedException",
    }
)
AWS_ERRORS = (BotoCoreError, ClientError)


@dataclass(frozen=True)
class Subject:
    """What a call was about, for the message: ``dead-letter queue <url>`` and where its value came from."""

    what: str
    check: str


class AwsProblem(Exception):
    """An AWS error, already explained in one line (``str()``)."""


def explain(error: BaseException, subject: Subject) -> str:
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    if isinstance(error, NoRegionError):
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), e.g. AWS_REGION=eu-west-1"
    if isinstance(error, EndpointConnectionError):
        where = f"the {subject.what}: {error}"
        return f"cannot reach AWS for {where} (check the network, AWS_ENDPOINT_URL, AWS_REGION)"
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "Error"))
        message = " ".join(str(details.get("Message", "")).split())[:200]
        if code in _MISSING:
            return f"the {subject.what} does not exist ({code}): check {subject.check}, and AWS_REGION"
        if code in _DENIED:
            return (
                f"not allowed to use the {subject.what} ({code}: {message}): check the AWS credentials "
                f"and role you run with, and {subject.check}"
            )
        return f"the {subject.what} answered {code}: {message} (check {subject.check})"
    return f"the {subject.what}: {type(error).__name__}: {' '.join(str(error).split())[:200]}"
