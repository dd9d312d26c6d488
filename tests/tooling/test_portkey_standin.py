"""Tests for the local Portkey stand-in (devstack/portkey_standin.py).

Every server is stopped by a fixture or a context manager; concurrency tests synchronise on
events and the stand-in's bounded waits, never on sleeps.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, cast

import pytest

from devstack.portkey_standin import MetadataSemantics, PortkeyStandIn, Reply

API_KEY = "pk-test-good"
HEADERS: dict[str, str] = {
    "x-portkey-api-key": API_KEY,
    "x-portkey-virtual-key": "vk-openai",
    "Content-Type": "application/json",
    "OpenAI-Beta": "assistants=v2",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: PortkeyStandIn,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Answer:
    """One request on a fresh connection, closed afterwards."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(HEADERS if headers is None else headers))
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def post(
    server: PortkeyStandIn,
    thread_id: str,
    payload: Any,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Answer:
    """POST a Modify Thread body to ``thread_id`` (already URL-safe)."""
    body = json.dumps(payload).encode()
    return call(server, "POST", f"{server.prefix}/threads/{thread_id}", body, headers, timeout)


def answer_thread(server: PortkeyStandIn, thread_id: str) -> dict[str, Any]:
    """The stored thread, which must exist."""
    stored = server.thread(thread_id)
    assert stored is not None
    return stored


@pytest.fixture
def standin() -> Iterator[PortkeyStandIn]:
    with PortkeyStandIn(api_keys={API_KEY}) as server:
        yield server
        assert server.errors() == []


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


# --------------------------------------------------------------------------- thread store


def test_post_to_unknown_thread_creates_it_and_returns_a_thread_object(standin: PortkeyStandIn) -> None:
    # Given an empty store
    # When a Modify Thread request arrives for an unknown id
    answer = post(standin, "thread_new", {"metadata": {"stage": "triage"}})

    # Then it is created and answered with a ThreadObject
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json == {
        "id": "thread_new",
        "object": "thread",
        "created_at": answer.json["created_at"],
        "metadata": {"stage": "triage"},
        "tool_resources": {},
    }
    assert isinstance(answer.json["created_at"], int)
    assert standin.thread("thread_new") == answer.json


def test_replace_replaces_present_fields_and_keeps_absent_ones() -> None:
    # Given a stand-in whose upstream replaces the metadata map, and a thread with metadata and tools
    resources = {"file_search": {"vector_store_ids": ["vs_1"]}}
    with PortkeyStandIn(metadata_semantics="replace") as standin:
        standin.seed("thread_1", metadata={"a": "1", "b": "2"}, tool_resources=resources)

        # When only metadata is sent
        answer = post(standin, "thread_1", {"metadata": {"c": "3"}})

        # Then metadata is replaced (not merged) and tool_resources is untouched
        assert answer.status == 200
        assert answer.json["metadata"] == {"c": "3"}
        assert answer.json["tool_resources"] == resources

        # When tool_resources is sent as null
        answer = post(standin, "thread_1", {"tool_resources": None})

        # Then null is stored as null and metadata keeps its value
        assert answer.json["tool_resources"] is None
        assert answer.json["metadata"] == {"c": "3"}
        assert answer_thread(standin, "thread_1")["tool_resources"] is None
        assert standin.metadata_semantics == "replace"


def test_merge_is_the_default_and_sets_only_the_keys_an_update_names(standin: PortkeyStandIn) -> None:
    # Given the default stand-in and a thread with two keys and tool resources
    resources = {"file_search": {"vector_store_ids": ["vs_1"]}}
    standin.seed("thread_1", metadata={"a": "1", "b": "2"}, tool_resources=resources)

    # When an update names one existing key (emptied) and one new key
    answer = post(standin, "thread_1", {"metadata": {"a": "", "c": "3"}})

    # Then those are set, the key left out stays, an empty string stays a key, tools are untouched
    assert standin.metadata_semantics == "merge"
    assert answer.status == 200
    assert answer.json["metadata"] == {"a": "", "b": "2", "c": "3"}
    assert answer.json["tool_resources"] == resources
    assert answer_thread(standin, "thread_1")["metadata"] == {"a": "", "b": "2", "c": "3"}


def test_merge_replaces_tool_resources_whole(standin: PortkeyStandIn) -> None:
    # Given a thread with both tools' resources
    standin.seed(
        "thread_1",
        metadata={"a": "1"},
        tool_resources={
            "code_interpreter": {"file_ids": ["file_1"]},
            "file_search": {"vector_store_ids": ["vs_1"]},
        },
    )

    # When an update sets one tool's resources
    answer = post(standin, "thread_1", {"tool_resources": {"code_interpreter": {"file_ids": ["file_2"]}}})

    # Then tool_resources holds exactly that value (the newest value wins whole), metadata stays
    assert answer.status == 200
    assert answer.json["tool_resources"] == {"code_interpreter": {"file_ids": ["file_2"]}}
    assert answer.json["metadata"] == {"a": "1"}


@pytest.mark.parametrize("semantics", ["merge", "replace"])
def test_a_null_metadata_value_is_refused_and_the_thread_kept(semantics: MetadataSemantics) -> None:
    # Given a thread with a key (a key cannot be deleted: null is not a string)
    with PortkeyStandIn(metadata_semantics=semantics) as standin:
        standin.seed("thread_1", metadata={"a": "1", "b": "2"})

        # When an update tries to delete it with a JSON null
        answer = post(standin, "thread_1", {"metadata": {"a": None}})

        # Then it is a 400 naming the key, and the thread keeps both keys
        assert answer.status == 400
        assert answer.json["error"]["param"] == "metadata.a"
        assert "got null" in answer.json["error"]["message"]
        assert answer_thread(standin, "thread_1")["metadata"] == {"a": "1", "b": "2"}


def test_merge_refuses_an_update_that_would_make_the_thread_hold_more_than_16_keys(
    standin: PortkeyStandIn,
) -> None:
    # Given a thread holding 15 keys
    held = {f"k{index:02d}": "v" for index in range(15)}
    standin.seed("thread_1", metadata=held)

    # When one update adds a 16th key and an existing one, and another would add two more
    sixteenth = post(standin, "thread_1", {"metadata": {"k00": "new", "k15": "v"}})
    beyond = post(standin, "thread_1", {"metadata": {"k16": "v", "k17": "v"}})

    # Then the thread may hold 16 keys, but not more: a 400 naming the limit, the keys there stay
    assert sixteenth.status == 200
    assert len(sixteenth.json["metadata"]) == 16
    assert beyond.status == 400
    error = beyond.json["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "metadata",
        "object_above_max_properties",
    )
    assert "at most 16 properties" in error["message"]
    assert "would hold 18 properties" in error["message"]
    assert answer_thread(standin, "thread_1")["metadata"] == {**held, "k00": "new", "k15": "v"}


def test_replace_accepts_16_new_keys_over_16_held_ones() -> None:
    # Given a replacing upstream and a thread holding 16 keys
    with PortkeyStandIn(metadata_semantics="replace") as standin:
        standin.seed("thread_1", metadata={f"old{index}": "v" for index in range(16)})

        # When an update sends 16 other keys
        fresh = {f"new{index}": "v" for index in range(16)}
        answer = post(standin, "thread_1", {"metadata": fresh})

        # Then the map is replaced: the limit applies to the map sent, not to a merge
        assert answer.status == 200
        assert answer_thread(standin, "thread_1")["metadata"] == fresh


def test_a_scripted_write_merges_and_is_not_stored_beyond_the_limit(standin: PortkeyStandIn) -> None:
    # Given a thread holding 16 keys and two successes whose answers are lost mid-way (written upstream)
    held = {f"k{index:02d}": "v" for index in range(16)}
    standin.seed("thread_1", metadata=held)
    standin.script("thread_1", Reply(drop="mid_response"), Reply(drop="mid_response"))

    # When one update sets a held key and another adds a 17th
    def send(metadata: dict[str, str]) -> None:
        json.loads(post(standin, "thread_1", {"metadata": metadata}).body)

    for metadata in ({"k00": "new"}, {"k16": "v"}):
        with pytest.raises((http.client.IncompleteRead, ConnectionError, http.client.HTTPException)):
            send(metadata)

    # Then the first was merged in, the second was not stored
    assert answer_thread(standin, "thread_1")["metadata"] == {**held, "k00": "new"}


def test_an_unknown_metadata_semantics_is_refused() -> None:
    with pytest.raises(ValueError, match="merge"):
        PortkeyStandIn(metadata_semantics=cast(Any, "append"))


def test_thread_snapshots_are_copies(standin: PortkeyStandIn) -> None:
    # Given a seeded thread
    standin.seed("thread_1", metadata={"a": "1"})

    # When a caller mutates the snapshot it got
    snapshot = standin.thread("thread_1")
    assert snapshot is not None
    snapshot["metadata"]["a"] = "changed"

    # Then the store is unchanged
    assert standin.thread("thread_1") == {**snapshot, "metadata": {"a": "1"}}


def test_get_returns_the_stored_thread_or_404(standin: PortkeyStandIn) -> None:
    # Given one stored thread
    standin.seed("thread_1", metadata={"k": "v"})

    # When both it and an unknown one are retrieved
    found = call(standin, "GET", "/v1/threads/thread_1")
    missing = call(standin, "GET", "/v1/threads/thread_nope")

    # Then the stored one is returned and the unknown one is 404
    assert found.status == 200
    assert found.json["metadata"] == {"k": "v"}
    assert missing.status == 404
    assert missing.json["error"]["message"] == "No thread found with id 'thread_nope'."


def test_unknown_thread_is_404_when_auto_create_is_off() -> None:
    # Given a stand-in that does not create threads on demand
    with PortkeyStandIn(auto_create=False) as server:
        # When an unknown thread is modified
        answer = post(server, "thread_missing", {"metadata": {}})

        # Then it is an OpenAI-style 404 and nothing is stored
        assert answer.status == 404
        assert answer.json == {
            "error": {
                "message": "No thread found with id 'thread_missing'.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        assert server.thread("thread_missing") is None

        # And a seeded thread can still be modified
        server.seed("thread_known")
        assert post(server, "thread_known", {"metadata": {"x": "y"}}).status == 200


# --------------------------------------------------------------------------- auth and validation


def test_request_without_credentials_is_401() -> None:
    # Given a stand-in that accepts any key
    with PortkeyStandIn() as server:
        # When a request carries neither x-portkey-api-key nor Authorization
        headers = {k: v for k, v in HEADERS.items() if k != "x-portkey-api-key"}
        answer = post(server, "thread_1", {}, headers=headers)

        # Then it is rejected
        assert answer.status == 401
        assert answer.json["error"]["code"] == "missing_api_key"


def test_wrong_api_key_is_401_and_rotation_takes_effect(standin: PortkeyStandIn) -> None:
    # Given a stand-in that knows one key
    # When another key is used
    rejected = post(standin, "thread_1", {}, headers={**HEADERS, "x-portkey-api-key": "pk-old"})

    # Then it is a 401 with an OpenAI-style body and nothing is stored
    assert rejected.status == 401
    assert rejected.json["error"]["code"] == "invalid_api_key"
    assert standin.thread("thread_1") is None

    # When the keys are rotated
    standin.set_api_keys(["pk-new"])

    # Then the new key works and the old one does not
    assert post(standin, "thread_1", {}, headers={**HEADERS, "x-portkey-api-key": "pk-new"}).status == 200
    assert post(standin, "thread_1", {}).status == 401


def test_gateway_forwarded_request_is_checked_against_auth_tokens() -> None:
    # Given a stand-in used as the gateway's custom host, expecting one provider token
    with PortkeyStandIn(auth_tokens={"sk-provider"}) as server:
        forwarded = {
            "Authorization": "Bearer sk-provider",
            "Content-Type": "application/json",
            "OpenAI-Beta": "assistants=v2",
        }

        # When the gateway forwards a request (no x-portkey-* headers) to {custom_host}/threads/{id}
        accepted = post(server, "thread_1", {"metadata": {"via": "gateway"}}, headers=forwarded)
        rejected = post(server, "thread_1", {}, headers={**forwarded, "Authorization": "Bearer sk-wrong"})
        not_bearer = post(server, "thread_1", {}, headers={**forwarded, "Authorization": "Basic sk-provider"})

        # Then only the right bearer token is accepted
        assert accepted.status == 200
        assert rejected.status == 401
        assert not_bearer.status == 401
        assert accepted.json["metadata"] == {"via": "gateway"}


def test_missing_beta_header_is_400_unless_not_required() -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "OpenAI-Beta"}
    # Given a strict and a lenient stand-in
    with PortkeyStandIn() as strict, PortkeyStandIn(require_beta_header=False) as lenient:
        # When a request lacks OpenAI-Beta
        refused = post(strict, "thread_1", {}, headers=headers)
        allowed = post(lenient, "thread_1", {}, headers=headers)
        wrong_version = post(strict, "thread_1", {}, headers={**headers, "OpenAI-Beta": "assistants=v1"})

        # Then only the lenient one accepts it
        assert refused.status == 400
        assert "OpenAI-Beta: assistants=v2" in refused.json["error"]["message"]
        assert wrong_version.status == 400
        assert allowed.status == 200


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            b'{"metadata": {}, "name": "x"}',
            "application/json",
            "Unrecognized request argument supplied: name",
        ),
        (b'{"a": 1, "b": 2}', "application/json", "Unrecognized request arguments supplied: a, b"),
        (b"{not json", "application/json", "We could not parse the JSON body"),
        (b"[]", "application/json", "Invalid type for 'body'"),
        (b"{}", "text/plain", "Invalid Content-Type header"),
        (b'{"metadata": "x"}', "application/json", "Invalid type for 'metadata'"),
        (b'{"metadata": {"n": 1}}', "application/json", "Invalid type for 'metadata.n'"),
        (
            json.dumps({"metadata": {str(i): "v" for i in range(17)}}).encode(),
            "application/json",
            "too many properties",
        ),
        (b'{"metadata": {"k": "' + b"v" * 513 + b'"}}', "application/json", "string too long"),
        (b'{"tool_resources": {"web": {}}}', "application/json", "tool_resources.web"),
        (
            b'{"tool_resources": {"file_search": {"vector_store_ids": ["a", "b"]}}}',
            "application/json",
            "array too long",
        ),
    ],
)
def test_invalid_bodies_are_400(
    standin: PortkeyStandIn, body: bytes, content_type: str, message: str
) -> None:
    # Given a stored thread
    standin.seed("thread_1", metadata={"keep": "me"})

    # When an invalid Modify Thread request arrives
    answer = call(standin, "POST", "/v1/threads/thread_1", body, {**HEADERS, "Content-Type": content_type})

    # Then it is a 400 with an OpenAI-style message and the thread is unchanged
    assert answer.status == 400
    assert message in answer.json["error"]["message"]
    assert answer.json["error"]["type"] == "invalid_request_error"
    assert answer_thread(standin, "thread_1")["metadata"] == {"keep": "me"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/whatever"),
        ("POST", "/v1/threads/a/b"),
        ("POST", "/v1/threads/"),
        ("DELETE", "/v1/threads/thread_1"),
        ("POST", "/threads/thread_1"),
    ],
)
def test_anything_else_is_404_invalid_url(standin: PortkeyStandIn, method: str, path: str) -> None:
    # When a request goes to something that is not a thread endpoint
    answer = call(standin, method, path, b"{}")

    # Then it is an OpenAI-style 404 naming the URL
    assert answer.status == 404
    assert answer.json["error"]["message"] == f"Invalid URL ({method} {path})"


def test_trace_id_is_echoed_on_success_and_on_error(standin: PortkeyStandIn) -> None:
    # Given requests that carry a trace id
    traced = {**HEADERS, "x-portkey-trace-id": "trace-123"}
    standin.script("thread_2", Reply(status=503))

    # When one succeeds, one is rejected and one gets a scripted error
    ok = post(standin, "thread_1", {}, headers=traced)
    unauthorised = post(standin, "thread_1", {}, headers={**traced, "x-portkey-api-key": "bad"})
    scripted = post(standin, "thread_2", {}, headers=traced)

    # Then every answer echoes it
    assert [a.headers.get("x-portkey-trace-id") for a in (ok, unauthorised, scripted)] == ["trace-123"] * 3
    # And an untraced request gets no trace header
    assert "x-portkey-trace-id" not in post(standin, "thread_1", {}).headers


def test_custom_prefix_and_urls() -> None:
    # Given a stand-in mounted under a custom prefix
    with PortkeyStandIn(prefix="custom/openai/") as server:
        # Then url = root_url + prefix, and that is where threads live
        assert server.prefix == "/custom/openai"
        assert server.url == f"http://127.0.0.1:{server.port}/custom/openai"
        assert server.root_url == f"http://127.0.0.1:{server.port}"
        assert post(server, "thread_1", {}).status == 200
        assert call(server, "POST", "/v1/threads/thread_1", b"{}").status == 404


# --------------------------------------------------------------------------- scripting


def test_scripted_429_with_retry_after_then_success(standin: PortkeyStandIn) -> None:
    # Given one scripted rate-limit answer for the thread
    standin.script("thread_1", Reply(status=429, headers={"Retry-After": "1"}))
    request = urllib.request.Request(
        f"{standin.url}/threads/thread_1",
        data=json.dumps({"metadata": {"try": "1"}}).encode(),
        headers=HEADERS,
        method="POST",
    )

    # When the client calls twice
    with pytest.raises(urllib.error.HTTPError) as first:
        urllib.request.urlopen(request, timeout=5)
    error = first.value
    try:
        error_body = json.loads(error.read())
    finally:
        error.close()
    assert standin.thread("thread_1") is None
    with urllib.request.urlopen(request, timeout=5) as second:
        success = json.loads(second.read())

    # Then the first is a 429 with Retry-After and an OpenAI-style body, the second applies
    assert error.code == 429
    assert error.headers["Retry-After"] == "1"
    assert error_body["error"]["code"] == "rate_limit_exceeded"
    assert success["metadata"] == {"try": "1"}
    assert [r.status for r in standin.requests_for("thread_1")] == [429, 200]
    assert standin.pending_scripts("thread_1") == 0


def test_token_bucket_refuses_beyond_its_rate_before_any_script(standin: PortkeyStandIn) -> None:
    # Given a limit of 3 requests a second (bursts of 3), Retry-After: 2, and a script for the thread
    standin.rate_limit(3, retry_after="2")
    standin.script("thread_1", Reply(status=201))

    # When five requests arrive at once
    answers = [post(standin, "thread_1", {"metadata": {"n": str(n)}}) for n in range(5)]

    # Then the first three pass (the first one consuming the script), the rest are 429 with
    # Retry-After and leave the store alone; lifting the limit lets requests through again
    assert [answer.status for answer in answers][:3] == [201, 200, 200]
    refused = [answer for answer in answers[3:] if answer.status == 429]
    assert refused
    assert all(answer.headers["retry-after"] == "2" for answer in refused)
    assert refused[0].json["error"]["code"] == "rate_limit_exceeded"
    assert answer_thread(standin, "thread_1")["metadata"]["n"] in {"2", "3", "4"}
    standin.rate_limit(None)
    assert post(standin, "thread_1", {"metadata": {}}).status == 200


def test_latency_delays_normal_answers(standin: PortkeyStandIn) -> None:
    # Given normal answers that take 30 s
    standin.latency = 30

    # When the client waits briefly, Then it times out
    with pytest.raises(TimeoutError):
        post(standin, "thread_1", {}, timeout=0.2)


def test_an_echoing_reply_puts_the_request_headers_in_its_error_message(standin: PortkeyStandIn) -> None:
    # Given a reply that echoes the request's headers, as some custom hosts and providers do
    standin.always("thread_1", Reply(status=401, echo_headers=True))

    # When a request carrying credentials arrives
    answer = post(standin, "thread_1", {}, headers={**HEADERS, "x-portkey-api-key": "pk-echo-me"})

    # Then the error message repeats them (what the function must redact before using the text)
    assert answer.status == 401
    message = answer.json["error"]["message"]
    assert message.startswith("Incorrect API key provided. Request headers: ")
    assert '"x-portkey-api-key": "pk-echo-me"' in message


def test_thread_queue_is_used_before_the_any_thread_queue(standin: PortkeyStandIn) -> None:
    # Given a queue for any thread and one for thread_1
    standin.script(None, Reply(status=500), Reply(status=502))
    standin.script("thread_1", Reply(status=409))

    # When requests arrive
    statuses = [post(standin, tid, {}).status for tid in ("thread_1", "thread_1", "thread_2", "thread_2")]

    # Then thread_1 uses its own queue first, then the shared one, then normal behaviour
    assert statuses == [409, 500, 502, 200]
    assert standin.pending_scripts(None) == 0


def test_always_answers_every_request_for_that_thread(standin: PortkeyStandIn) -> None:
    # Given a thread that is always missing
    standin.always("thread_gone", Reply(status=404))

    # When it is modified repeatedly, next to another thread
    gone = [post(standin, "thread_gone", {}).status for _ in range(3)]
    other = post(standin, "thread_other", {}).status

    # Then only that thread is affected, and forgetting restores normal behaviour
    assert gone == [404, 404, 404]
    assert other == 200
    standin.forget_always("thread_gone")
    assert post(standin, "thread_gone", {}).status == 200


def test_scripted_success_can_skip_the_store_and_send_a_custom_body(standin: PortkeyStandIn) -> None:
    # Given a seeded thread and two scripted successes
    standin.seed("thread_1", metadata={"old": "1"})
    standin.script(
        "thread_1",
        Reply(status=200, apply=False),
        Reply(status=200, body=b'{"custom": true}', headers={"X-Extra": "yes"}),
    )

    # When two updates arrive
    not_applied = post(standin, "thread_1", {"metadata": {"new": "1"}})
    custom = post(standin, "thread_1", {"metadata": {"newer": "1"}})

    # Then the first answers the stored thread without changing it
    assert not_applied.status == 200
    assert not_applied.json["metadata"] == {"old": "1"}
    # And the second sends its body verbatim but still applies (2xx default; merged, only its key)
    assert custom.body == b'{"custom": true}'
    assert custom.headers["x-extra"] == "yes"
    assert answer_thread(standin, "thread_1")["metadata"] == {"old": "1", "newer": "1"}


def test_scripted_error_can_apply_the_update(standin: PortkeyStandIn) -> None:
    # Given a 500 that is scripted to have applied the update anyway
    standin.script("thread_1", Reply(status=500, apply=True, body="<html>upstream</html>"))

    # When the update arrives
    answer = post(standin, "thread_1", {"metadata": {"applied": "yes"}})

    # Then the client sees the 500 with the raw body, and the store has the update
    assert answer.status == 500
    assert answer.body == b"<html>upstream</html>"
    assert answer_thread(standin, "thread_1")["metadata"] == {"applied": "yes"}


def test_drop_before_response_raises_and_does_not_apply(standin: PortkeyStandIn) -> None:
    # Given a request that will be dropped without an answer
    standin.script("thread_1", Reply(drop="before_response"))

    # When the client sends it
    with pytest.raises(http.client.RemoteDisconnected):
        post(standin, "thread_1", {"metadata": {"x": "1"}})

    # Then nothing was stored and the record says "dropped"
    assert standin.thread("thread_1") is None
    assert standin.wait_for(lambda: len(standin.recorded()) == 1)
    assert standin.recorded()[0].status == 0


def test_mid_response_drop_raises_incomplete_read_and_applies(standin: PortkeyStandIn) -> None:
    # Given a success whose connection dies half-way through the body
    standin.script("thread_1", Reply(drop="mid_response"))
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
    try:
        # When the client reads the answer
        conn.request("POST", "/v1/threads/thread_1", body=b'{"metadata": {"x": "1"}}', headers=HEADERS)
        response = conn.getresponse()
        assert response.status == 200

        # Then reading the body fails
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()

    # And the update was applied (the server did the work, the answer was lost)
    assert answer_thread(standin, "thread_1")["metadata"] == {"x": "1"}
    assert standin.wait_for(lambda: len(standin.recorded()) == 1)
    assert standin.recorded()[0].status == 0


# --------------------------------------------------------------------------- timing and concurrency


def test_held_reply_is_answered_only_after_its_event(
    standin: PortkeyStandIn, pool: ThreadPoolExecutor
) -> None:
    # Given a held reply for the slow thread
    release = threading.Event()
    standin.script("slow", Reply(hold=release))

    # When the slow request is in flight and a fast one arrives
    slow: Future[Answer] = pool.submit(post, standin, "slow", {"metadata": {"s": "1"}})
    assert standin.wait_for_arrivals(1)
    fast = post(standin, "fast", {})

    # Then the fast one is answered while the slow one still waits
    assert fast.status == 200
    assert not slow.done()
    assert standin.wait_for(lambda: [r.thread_id for r in standin.recorded()] == ["fast"])
    assert standin.thread("slow") is None

    # When the event is set, the slow one is answered (and applied) too
    release.set()
    assert slow.result(timeout=5).status == 200
    assert answer_thread(standin, "slow")["metadata"] == {"s": "1"}
    assert standin.wait_for(lambda: len(standin.recorded()) == 2)
    records = standin.recorded()
    assert [(r.thread_id, r.sequence) for r in records] == [("slow", 0), ("fast", 1)]
    assert records[0].arrived_at <= records[1].arrived_at


def test_max_in_flight_counts_held_requests(standin: PortkeyStandIn, pool: ThreadPoolExecutor) -> None:
    # Given three held replies sharing one event
    release = threading.Event()
    standin.script(None, *[Reply(hold=release)] * 3)

    # When three requests are sent concurrently
    futures = [pool.submit(post, standin, f"thread_{i}", {}) for i in range(3)]

    # Then all three are in flight at once
    assert standin.wait_for_in_flight(3)
    assert standin.in_flight == 3
    assert standin.max_in_flight == 3

    # When they are released, all succeed and the gauge drops while the peak stays
    release.set()
    assert [f.result(timeout=5).status for f in futures] == [200, 200, 200]
    assert standin.wait_for(lambda: standin.in_flight == 0)
    assert standin.max_in_flight == 3
    assert standin.arrived == 3


def test_keep_alive_reuses_one_connection(standin: PortkeyStandIn) -> None:
    # Given one HTTP/1.1 connection
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
    try:
        # When two requests are sent over it
        statuses = []
        for thread_id in ("thread_1", "thread_2"):
            conn.request("POST", f"/v1/threads/{thread_id}", body=b"{}", headers=HEADERS)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        conn.close()

    # Then both were served on a single TCP connection
    assert statuses == [200, 200]
    assert standin.connections_opened == 1

    # And a separate request opens a second one
    post(standin, "thread_3", {})
    assert standin.connections_opened == 2


def test_delay_makes_a_short_client_timeout_expire(standin: PortkeyStandIn) -> None:
    # Given a reply delayed far beyond the client's timeout
    standin.script("thread_1", Reply(delay=30))

    # When the client waits briefly, Then it times out
    with pytest.raises(TimeoutError):
        post(standin, "thread_1", {}, timeout=0.2)


def test_drip_headers_sends_a_whole_answer_one_header_byte_at_a_time(standin: PortkeyStandIn) -> None:
    # Given a reply whose headers trickle out after its status line
    standin.script("thread_1", Reply(drip_headers=0.001))

    # When it is requested, Then the answer is complete and normal: only its pace differs
    answer = post(standin, "thread_1", {"metadata": {"a": "b"}})
    assert (answer.status, answer.json["metadata"]) == (200, {"a": "b"})


def test_hold_wait_is_bounded() -> None:
    # Given a stand-in whose holds give up quickly, and a hold that is never released
    with PortkeyStandIn(hold_timeout=0.05) as server:
        server.script("thread_1", Reply(hold=threading.Event()))

        # When the request is sent, Then it is answered anyway
        assert post(server, "thread_1", {}).status == 200


def test_stop_is_fast_with_pending_held_and_delayed_requests(pool: ThreadPoolExecutor) -> None:
    # Given a held request (never released), a long-delayed one and an idle keep-alive connection
    server = PortkeyStandIn().start()
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        server.script(None, Reply(hold=threading.Event()), Reply(delay=60))
        pending = [pool.submit(post, server, f"thread_{i}", {}, None, 30.0) for i in range(2)]
        assert server.wait_for_in_flight(2)
        idle.connect()
        assert server.wait_for(lambda: server.connections_opened == 3)

        # When the server is stopped
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started

        # Then it stops quickly, the pending requests are dropped, and stop() is idempotent
        assert elapsed < 1.0
        for future in pending:
            with pytest.raises(ConnectionError):
                future.result(timeout=5)
        assert [r.status for r in server.recorded()] == [0, 0]
        server.stop()
        assert not server.running
        assert server.errors() == []
    finally:
        idle.close()
        server.stop()


# --------------------------------------------------------------------------- recording


def test_raw_path_is_recorded_undecoded_for_encoded_slash(standin: PortkeyStandIn) -> None:
    # When a thread id containing "/" is sent percent-encoded
    answer = post(standin, "thread%2Fwith%2Fslash", {"metadata": {"k": "v"}})

    # Then the record keeps the raw path, the id is decoded, and the thread is stored under it
    assert answer.status == 200
    assert answer.json["id"] == "thread/with/slash"
    assert standin.wait_for(lambda: len(standin.recorded()) == 1)
    record = standin.recorded()[0]
    assert record.path == "/v1/threads/thread%2Fwith%2Fslash"
    assert record.thread_id == "thread/with/slash"
    assert standin.thread("thread/with/slash") is not None


def test_recorded_request_details(standin: PortkeyStandIn) -> None:
    # When one request is sent
    before = time.monotonic()
    post(standin, "thread_1", {"metadata": {"k": "v"}}, headers={**HEADERS, "X-Custom-Header": "Yes"})

    # Then its record has lower-cased headers, the raw and parsed body, status and timing
    assert standin.wait_for(lambda: len(standin.requests) == 1)
    [record] = standin.requests_for("thread_1")
    assert record.method == "POST"
    assert record.headers["x-custom-header"] == "Yes"
    assert record.headers["x-portkey-virtual-key"] == "vk-openai"
    assert record.body == b'{"metadata": {"k": "v"}}'
    assert record.json == {"metadata": {"k": "v"}}
    assert record.status == 200
    assert record.sequence == 0
    assert before <= record.arrived_at <= time.monotonic()


def test_chunked_request_body_is_accepted(standin: PortkeyStandIn) -> None:
    # Given a client that streams its body in chunks
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
    try:
        # When it sends the update with Transfer-Encoding: chunked
        chunks = iter([b'{"metadata": ', b'{"chunked": "yes"}}'])
        conn.request("POST", "/v1/threads/thread_1", body=chunks, headers=HEADERS, encode_chunked=True)
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()

    # Then it is decoded and applied
    assert response.status == 200
    assert body["metadata"] == {"chunked": "yes"}


def test_reset_clears_everything(standin: PortkeyStandIn) -> None:
    # Given state of every kind
    standin.seed("thread_1")
    standin.script("thread_2", Reply(status=500))
    standin.always("thread_3", Reply(status=404))
    post(standin, "thread_4", {})

    # When the stand-in is reset
    standin.reset()

    # Then store, scripts, records and counters are empty
    assert standin.thread("thread_1") is None
    assert standin.thread("thread_4") is None
    assert standin.pending_scripts("thread_2") == 0
    assert standin.recorded() == []
    assert (standin.arrived, standin.max_in_flight, standin.connections_opened) == (0, 0, 0)
    assert post(standin, "thread_3", {}).status == 200
    assert standin.recorded()[0].sequence == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"status": 99}, ValueError),
        ({"status": 600}, ValueError),
        ({"delay": -1.0}, ValueError),
        ({"drop": "sideways"}, ValueError),
        ({"body": 42}, TypeError),
    ],
)
def test_reply_rejects_impossible_values(kwargs: dict[str, Any], error: type[Exception]) -> None:
    # When an impossible reply is built, Then it fails at once
    with pytest.raises(error, match=next(iter(kwargs))):
        Reply(**kwargs)


def test_reply_apply_defaults() -> None:
    # Then 2xx applies unless the request is dropped before it got through; errors do not
    assert Reply().applies_update
    assert Reply(drop="mid_response").applies_update
    assert not Reply(drop="before_response").applies_update
    assert not Reply(status=503).applies_update
    assert Reply(status=503, apply=True).applies_update
    assert not Reply(status=200, apply=False).applies_update


def test_url_requires_a_running_server() -> None:
    # Given a stand-in that was never started, When its URL is asked for, Then it refuses
    server = PortkeyStandIn()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    server.stop()  # a no-op


# --------------------------------------------------------------------------- standalone


@pytest.mark.parametrize(
    ("signum", "semantics", "expected"),
    [(signal.SIGTERM, "merge", {"a": "b", "c": "d"}), (signal.SIGINT, "replace", {"c": "d"})],
)
def test_module_runs_standalone_until_signalled(
    signum: signal.Signals, semantics: str, expected: dict[str, str]
) -> None:
    # Given the stand-in started as a module, merging or replacing metadata
    command = [sys.executable, "-m", "devstack.portkey_standin", "--port", "0", "--api-key", API_KEY]
    with subprocess.Popen(
        [*command, "--metadata-semantics", semantics],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout = cast(Any, process.stdout)
            url = stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/v1")

            # When two requests with different keys are sent to the printed URL
            for data in (b'{"metadata": {"a": "b"}}', b'{"metadata": {"c": "d"}}'):
                request = urllib.request.Request(
                    f"{url}/threads/thread_1", data=data, headers=HEADERS, method="POST"
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    body = json.loads(response.read())

            # Then it answers as the option says, and SIGTERM / Ctrl-C stops it cleanly
            assert body["metadata"] == expected
            process.send_signal(signum)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
