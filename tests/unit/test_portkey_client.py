"""PortkeyClient.modify without sockets: request shape, classification, retries, time bounds."""

from __future__ import annotations

import pytest
from urllib3.exceptions import NewConnectionError, ReadTimeoutError

from tests.unit.fakes import FakePool, FixedCredentials
from thread_updater import redaction
from thread_updater.deadline import Deadline
from thread_updater.errors import ConfigurationError
from thread_updater.models import Target, TargetKind
from thread_updater.portkey import CallLimits, CallResult, PortkeyClient

T1 = Target(kind=TargetKind.THREAD, id="t1")

BASE = "https://portkey.example/v1"
NO_WAIT = {"Retry-After": "0"}


def client(
    pool: FakePool, *, attempts: int = 3, credentials: FixedCredentials | None = None
) -> PortkeyClient:
    limits = CallLimits(max_attempts=attempts, connect_timeout_s=1.0, read_timeout_s=1.0)
    return PortkeyClient(BASE, pool, credentials or FixedCredentials(), limits=limits)  # type: ignore[arg-type]


def in_seconds(seconds: float) -> Deadline:
    return Deadline.after(seconds)


def test_an_applied_update_is_one_post_with_exactly_the_body_and_headers() -> None:
    pool = FakePool()
    outcome = client(pool).modify(T1, {"metadata": {"a": "b"}}, trace_id="msg-1", deadline=in_seconds(30))
    assert (outcome.result, outcome.status, outcome.attempts, outcome.uncertain) == (
        CallResult.APPLIED,
        200,
        1,
        False,
    )
    [request] = pool.requests
    assert (request["method"], request["url"], request["json"]) == (
        "POST",
        f"{BASE}/threads/t1",
        {"metadata": {"a": "b"}},
    )
    assert request["headers"]["OpenAI-Beta"] == "assistants=v2"
    assert request["headers"]["x-portkey-trace-id"] == "msg-1"
    assert request["headers"]["x-portkey-api-key"] == "unit-test-key"


def test_a_conversation_update_posts_to_its_path_without_the_assistants_beta_header() -> None:
    # GIVEN a conversation target WHEN it is modified THEN the path is /conversations/{id}, the body is
    # unchanged, and no OpenAI-Beta header says "Assistants" to a gateway or provider
    pool = FakePool()
    target = Target(kind=TargetKind.CONVERSATION, id="conv_1")
    outcome = client(pool).modify(target, {"metadata": {"a": "b"}}, trace_id="msg-1", deadline=in_seconds(30))
    assert outcome.result is CallResult.APPLIED
    [request] = pool.requests
    assert (request["url"], request["json"]) == (f"{BASE}/conversations/conv_1", {"metadata": {"a": "b"}})
    assert "OpenAI-Beta" not in request["headers"]
    assert request["headers"]["x-portkey-api-key"] == "unit-test-key"


def test_a_success_answer_is_neither_parsed_nor_searched_for_secrets() -> None:
    # GIVEN no redaction pattern built yet in this process (a cold start), and an upstream that
    # answers 200 with the whole thread
    redaction._compiled.cache_clear()
    pool = FakePool()
    pool.answer("/threads/t1", (200, {"id": "t1", "metadata": {f"k{n}": "v" * 512 for n in range(16)}}, {}))
    # WHEN the update is applied
    outcome = client(pool).modify(T1, {"metadata": {"a": "b"}}, trace_id="m", deadline=in_seconds(30))
    # THEN nothing built the pattern: its first build costs a cold start tens of ms (the benchmark's
    # cold-start ratio holds the number), and searching a success body costs every update CPU
    assert (outcome.result, outcome.error) == (CallResult.APPLIED, None)
    assert redaction._compiled.cache_info().currsize == 0


def test_a_permanent_4xx_is_rejected_at_once_with_the_upstream_message() -> None:
    pool = FakePool()
    pool.answer("/threads/t1", (404, {"error": {"message": "No thread found with id 't1'."}}, {}))
    outcome = client(pool).modify(T1, {}, trace_id="m", deadline=in_seconds(30))
    assert (outcome.result, outcome.attempts) == (CallResult.REJECTED, 1)
    assert outcome.error == "HTTP 404: No thread found with id 't1'."


def test_transient_answers_are_retried_until_one_applies() -> None:
    pool = FakePool()
    pool.answer("/threads/t1", (503, {}, NO_WAIT), (429, {}, NO_WAIT))
    outcome = client(pool).modify(T1, {}, trace_id="m", deadline=in_seconds(30))
    assert (outcome.result, outcome.attempts, outcome.retry_after_waits) == (CallResult.APPLIED, 3, 2)


def test_attempts_run_out_as_a_transient_outcome_with_the_last_error() -> None:
    pool = FakePool()
    pool.answer("/threads/t1", *[(502, {"error": {"message": "bad gateway"}}, NO_WAIT)] * 2)
    outcome = client(pool, attempts=2).modify(T1, {}, trace_id="m", deadline=in_seconds(30))
    assert (outcome.result, outcome.attempts, outcome.error) == (
        CallResult.TRANSIENT,
        2,
        "HTTP 502: bad gateway",
    )
    assert outcome.uncertain  # a 502 may have been applied before the gateway failed


@pytest.mark.parametrize(
    ("error", "uncertain"),
    [
        (ReadTimeoutError(None, "/threads/t1", "read timed out"), True),  # type: ignore[arg-type]
        (NewConnectionError(None, "connection refused"), False),  # type: ignore[arg-type]
    ],
    ids=["read-timeout", "connection-refused"],
)
def test_a_failed_attempt_is_uncertain_only_if_the_request_may_have_been_sent(
    error: Exception, uncertain: bool
) -> None:
    pool = FakePool()
    pool.answer("/threads/t1", error)  # type: ignore[arg-type]
    outcome = client(pool, attempts=1).modify(T1, {}, trace_id="m", deadline=in_seconds(30))
    assert (outcome.result, outcome.uncertain) == (CallResult.TRANSIENT, uncertain)


def test_a_retry_after_past_the_deadline_hands_back_without_waiting() -> None:
    pool = FakePool()
    pool.answer("/threads/t1", (429, {}, {"Retry-After": "120"}))
    outcome = client(pool).modify(T1, {}, trace_id="m", deadline=in_seconds(5))
    assert (outcome.result, outcome.attempts, outcome.retry_after_s) == (CallResult.TRANSIENT, 1, 120.0)
    assert "would pass the invocation deadline" in (outcome.error or "")


def test_no_request_starts_without_time_left() -> None:
    pool = FakePool()
    outcome = client(pool).modify(T1, {}, trace_id="m", deadline=in_seconds(0.1))
    assert (outcome.result, outcome.attempts, pool.requests) == (CallResult.TRANSIENT, 0, [])


def test_refused_credentials_are_refreshed_once_then_a_configuration_error() -> None:
    pool = FakePool()
    pool.answer("/threads/t1", (401, {}, {}), (401, {}, {}))
    credentials = FixedCredentials()
    outcome = client(pool, credentials=credentials).modify(T1, {}, trace_id="m", deadline=in_seconds(30))
    # returned, not raised: the caller records an earlier attempt in doubt before stopping the batch
    assert outcome.result is CallResult.HALTED
    assert isinstance(outcome.halt, ConfigurationError)
    assert "HTTP 401" in str(outcome.halt)
    assert credentials.refreshes == 1
    assert len(pool.requests) == 2


def test_a_trace_id_that_is_not_header_safe_is_sent_derived() -> None:
    pool = FakePool()
    client(pool).modify(T1, {}, trace_id="bad id\r\n", deadline=in_seconds(30))
    sent = pool.requests[0]["headers"]["x-portkey-trace-id"]
    assert sent.startswith("derived-")
    assert "\n" not in sent
