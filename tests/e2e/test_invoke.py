"""``make invoke EVENT=…``: one event file through the packaged function under AWS's runtime client."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.invoke import main
from devstack.portkey_standin import PortkeyStandIn
from tests.samples import EVENTS, load, sample_names


def invoke(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def section(text: str, title: str) -> list[str]:
    """The lines of the section headed ``title (N):`` (or ``title …:``), up to the next blank line."""
    [head] = [line for line in text.splitlines() if line.startswith(f"{title} (") and line.endswith(":")]
    lines = []
    for line in text.split(f"\n{head}\n", 1)[1].splitlines():
        if not line:
            break
        lines.append(line.strip())
    return lines


def response(text: str) -> Any:
    return json.loads("\n".join(section(text, "Response")))


def letters(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in section(text, "Dead letters")]


def test_the_sqs_sample_prints_the_response_logs_requests_and_dead_letters() -> None:
    # Given the SQS sample (two valid updates, three invalid messages)
    event = load("sqs-batch.json")

    # When it is invoked through the packaged function
    code, text = invoke(str(EVENTS / "sqs-batch.json"))

    # Then the function's response is printed: nothing handed back
    assert code == 0, text
    assert response(text) == {"batchItemFailures": []}
    # and the two requests that reached Portkey, with what they sent and the answer
    requests = section(text, "Requests to Portkey")
    assert [line.split(" -> ")[0] for line in sorted(requests)] == [
        "POST /v1/threads/thread_abc123",
        "POST /v1/threads/thread_def456",
    ]
    assert all(" -> 200  {" in line for line in requests)
    # and the three invalid messages' dead letters, by their SQS message ids
    found = letters(text)
    assert sorted(letter["message_id"] for letter in found) == sorted(
        record["messageId"] for record in event["Records"][2:]
    )
    assert {letter["category"] for letter in found} == {"validation"}
    # and the function's own JSON log lines, under the invocation's request id
    request_id = text.split("Response (request id ", 1)[1].split(")", 1)[0]
    logged = [json.loads(line) for line in section(text, "Log lines")]
    outcomes = [line for line in logged if line.get("function_request_id") == request_id]
    assert sorted(line["outcome"] for line in outcomes) == ["dead_lettered"] * 3 + ["success"] * 2
    assert "Timings: artifact " in text


@pytest.mark.parametrize(
    ("name", "kind"), [("eventbridge.json", "thread"), ("eventbridge-conversation.json", "conversation")]
)
def test_an_eventbridge_sample_returns_nothing_and_sends_one_request(name: str, kind: str) -> None:
    # Given an EventBridge sample (ModifyThread, ModifyConversation), as EventBridge invokes a Lambda target
    detail = load(name)["detail"]

    # When it is invoked
    code, text = invoke(str(EVENTS / name))

    # Then the function answers null after one request to the thread (or conversation) with the
    # detail's other fields, and no letter
    assert code == 0, text
    assert response(text) is None
    [request] = section(text, "Requests to Portkey")
    path, sent = request.split(" -> 200  ", 1)
    assert path == f"POST /v1/{kind}s/{detail[f'{kind}_id']}"
    assert json.loads(sent) == {key: value for key, value in detail.items() if key != f"{kind}_id"}
    assert letters(text) == []


def test_the_eventbridge_via_sqs_sample_dead_letters_the_invalid_detail() -> None:
    event = load("eventbridge-via-sqs.json")

    code, text = invoke(str(EVENTS / "eventbridge-via-sqs.json"))

    assert code == 0, text
    assert response(text) == {"batchItemFailures": []}
    assert len(section(text, "Requests to Portkey")) == 1
    [letter] = letters(text)
    invalid = event["Records"][1]
    assert (letter["message_id"], letter["payload"]) == (invalid["messageId"], invalid["body"])


def test_the_sqs_conversation_sample_applies_two_conversations_and_dead_letters_two_invalid() -> None:
    # Given the SQS conversation sample (two conversation updates, one with tool_resources, one naming
    # both a thread and a conversation)
    event = load("sqs-conversation.json")

    # When it is invoked through the packaged function
    code, text = invoke(str(EVENTS / "sqs-conversation.json"))

    # Then both conversations are modified at the conversation endpoint with their metadata only
    assert code == 0, text
    assert response(text) == {"batchItemFailures": []}
    sent = sorted(line.split(" -> 200  ") for line in section(text, "Requests to Portkey"))
    assert [(path, json.loads(body)) for path, body in sent] == [
        ("POST /v1/conversations/conv_abc123", {"metadata": {"stage": "reviewed", "owner": "ops"}}),
        ("POST /v1/conversations/conv_def456", {"metadata": {"migrated_from": "thread_def456"}}),
    ]
    # and the two invalid messages are dead-lettered with the reason
    found = {letter["message_id"]: letter for letter in letters(text)}
    first, second = (record["messageId"] for record in event["Records"][2:])
    assert set(found) == {first, second}
    assert "conversations have no tool_resources" in found[first]["error"]
    assert "exactly one of thread_id or conversation_id" in found[second]["error"]


# The samples the tests above invoke: every event in events/ (a new one needs its test here).
INVOKED = {
    "sqs-batch.json",
    "eventbridge.json",
    "eventbridge-via-sqs.json",
    "sqs-conversation.json",
    "eventbridge-conversation.json",
}


def test_every_event_sample_is_invoked_here() -> None:
    # Given the event files in events/, Then this module invokes each one through the packaged function
    assert sample_names() == INVOKED


def test_an_unsupported_event_is_the_invocations_error(tmp_path: Path) -> None:
    # Given an event file of a shape the function does not accept
    event_file = tmp_path / "api-gateway.json"
    event_file.write_text(json.dumps({"httpMethod": "GET", "path": "/"}))

    # When it is invoked
    code, text = invoke(str(event_file))

    # Then the runtime's error report is printed and the exit status says the invocation failed
    assert code == 1, text
    assert "Invocation failed (ValueError):" in text
    assert "unsupported event" in text
    assert section(text, "Requests to Portkey") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the event file"), ("{not json", "is not JSON")],
    ids=["missing", "not-json"],
)
def test_an_event_file_that_cannot_be_read_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    # Given a path to nothing, or to a file that is not JSON
    event_file = tmp_path / "event.json"
    if content is not None:
        event_file.write_text(content)

    # When it is invoked, Then it is a usage error naming the problem, before anything starts
    with pytest.raises(SystemExit) as stopped:
        main([str(event_file)])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_live_sends_to_the_given_portkey_with_the_given_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Portkey at PORTKEY_BASE_URL that accepts only its own API key, given in PORTKEY_SECRET_JSON
    with PortkeyStandIn(api_keys={"pk-live-invoke"}) as portkey:
        monkeypatch.setenv("PORTKEY_BASE_URL", portkey.url)
        secret = {"api_key": "pk-live-invoke", "virtual_key": "vk"}
        monkeypatch.setenv("PORTKEY_SECRET_JSON", json.dumps(secret))

        # When the EventBridge sample is invoked with --live
        code, text = invoke(str(EVENTS / "eventbridge.json"), "--live")

        # Then the update reached that Portkey, authenticated, and was applied
        assert code == 0, text
        [request] = portkey.requests
        assert (request.status, request.thread_id) == (200, load("eventbridge.json")["detail"]["thread_id"])
    assert "Requests to Portkey: sent to a real Portkey (--live)" in text
    assert "pk-live-invoke" not in text  # the secret is never printed
