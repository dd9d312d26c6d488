"""The message schema's limits, exactly at and just past each boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thread_updater.models import InvalidUpdate, Target, TargetKind, parse_sqs_body, parse_update_document
from thread_updater.validation import LOCATION_PART_LIMIT, REASON_LIMIT


def body(**fields: Any) -> str:
    return json.dumps({"thread_id": "thread_1", **fields})


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(16)}}, True),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, False),
        ({"metadata": {"k" * 64: "v"}}, True),
        ({"metadata": {"k" * 65: "v"}}, False),
        ({"metadata": {"k": "v" * 512}}, True),
        ({"metadata": {"k": "v" * 513}}, False),
        ({"metadata": {"k": None}}, False),
        ({"metadata": None}, True),
        ({"metadata": {}}, True),
        ({"metadata": "text"}, False),
        ({"tool_resources": {"code_interpreter": {"file_ids": ["f"] * 20}}}, True),
        ({"tool_resources": {"code_interpreter": {"file_ids": ["f"] * 21}}}, False),
        ({"tool_resources": {"code_interpreter": {"file_ids": [1]}}}, False),
        ({"tool_resources": {"file_search": {"vector_store_ids": ["vs"]}}}, True),
        ({"tool_resources": {"file_search": {"vector_store_ids": ["a", "b"]}}}, False),
        ({"tool_resources": {"file_search": {"vector_stores": []}}}, False),
        ({"tool_resources": None}, True),
        ({"tool_resources": {}}, True),
        ({"tool_resources": {"code_interpreter": None}}, False),  # only tool_resources itself may be null
        ({"tool_resources": {"file_search": None}}, False),
        ({"tool_resources": {"code_interpreter": {}, "file_search": None}}, False),
        ({"extra": 1}, False),
    ],
)
def test_limits(fields: dict[str, Any], valid: bool) -> None:
    text = body(**fields)
    if valid:
        parsed = parse_sqs_body(text)
        assert parsed.update.request_body() == fields
    else:
        with pytest.raises(InvalidUpdate):
            parse_sqs_body(text)


@pytest.mark.parametrize("thread_id", ["thread_abc123", "a", "A-b_9", "t" * 128])
def test_thread_ids_accepted(thread_id: str) -> None:
    assert parse_sqs_body(json.dumps({"thread_id": thread_id})).update.target.id == thread_id


@pytest.mark.parametrize(
    "thread_id",
    [
        "",
        "t" * 129,
        "../x",
        "a/b",
        "a%2Fb",
        "a?b",
        "a#b",
        "a b",
        "thread\n",
        "\tthread",
        "thr\u0435ad",  # Cyrillic e
        "\uff54hread",  # full-width t
        7,
        None,
    ],
)
def test_thread_ids_rejected(thread_id: Any) -> None:
    with pytest.raises(InvalidUpdate, match="thread_id"):
        parse_sqs_body(json.dumps({"thread_id": thread_id}))


def test_eventbridge_event_with_other_detail_type_is_invalid() -> None:
    event = {
        "version": "0",
        "id": "1",
        "detail-type": "CreateThread",
        "source": "s",
        "account": "1",
        "time": "2026-11-25T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"thread_id": "t"},
    }
    with pytest.raises(InvalidUpdate, match="detail-type"):
        parse_sqs_body(json.dumps(event))


def test_reasons_do_not_echo_the_input() -> None:
    with pytest.raises(InvalidUpdate) as caught:
        parse_sqs_body(body(metadata={"k": "SENSITIVE" * 100}))
    assert "SENSITIVE" not in str(caught.value)


def test_reasons_are_clipped_however_long_the_user_supplied_keys_are() -> None:
    # Given a body with many invalid, very long metadata keys (a key is part of the reason's path)
    keys = {f"{index}" + "k" * 100_000: "v" for index in range(20)}

    # When it is validated
    with pytest.raises(InvalidUpdate) as caught:
        parse_sqs_body(body(metadata=keys))

    # Then the reason names the problem, each path part is clipped, and the whole reason is bounded
    reason = str(caught.value)
    assert "metadata." in reason
    assert "k" * LOCATION_PART_LIMIT not in reason
    assert len(reason) <= len("invalid update: ") + REASON_LIMIT


def test_a_body_nested_deeper_than_the_stack_is_invalid_not_a_crash() -> None:
    # Given valid JSON nested far deeper than any decoder stack (no update nests beyond a few levels)
    deep = '{"thread_id":"t","metadata":' + '{"a":' * 100_000 + '"x"' + "}" * 100_001

    # When / Then it is an invalid update with a reason that says why, not a RecursionError
    with pytest.raises(InvalidUpdate, match="nested too deeply"):
        parse_sqs_body(deep)


def conversation(**fields: Any) -> str:
    return json.dumps({"conversation_id": "conv_1", **fields})


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(16)}}, True),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, False),
        ({"metadata": {"k" * 64: "v" * 512}}, True),
        ({"metadata": {"k" * 65: "v"}}, False),
        ({"metadata": {"k": "v" * 513}}, False),
        ({"metadata": {"k": None}}, False),  # the API: "expected a string, but got null"
        ({"metadata": {}}, True),
        ({"metadata": None}, False),  # what null does to a conversation is documented nowhere
        ({}, False),  # metadata is required
        ({"metadata": {"a": "b"}, "version": 3}, True),
        ({"metadata": {"a": "b"}, "extra": 1}, False),
    ],
)
def test_conversation_limits(fields: dict[str, Any], valid: bool) -> None:
    text = conversation(**fields)
    if valid:
        update = parse_sqs_body(text).update
        assert update.request_body() == {"metadata": fields["metadata"]}
        assert (update.target.kind, update.target.id, update.target.path) == (
            TargetKind.CONVERSATION,
            "conv_1",
            "conversations/conv_1",
        )
    else:
        with pytest.raises(InvalidUpdate):
            parse_sqs_body(text)


def test_tool_resources_on_a_conversation_says_conversations_have_none() -> None:
    with pytest.raises(InvalidUpdate, match="conversations have no tool_resources"):
        parse_sqs_body(conversation(metadata={}, tool_resources={"code_interpreter": {"file_ids": []}}))


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            {"thread_id": "t", "conversation_id": "c", "metadata": {}},
            "exactly one of thread_id or conversation_id",
        ),
        ({"metadata": {}}, "needs thread_id or conversation_id"),
        ({"conversation_id": "../x", "metadata": {}}, "conversation_id"),
    ],
)
def test_a_message_names_exactly_one_valid_id(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidUpdate, match=reason):
        parse_sqs_body(json.dumps(document))


def test_a_conversation_and_a_thread_of_one_id_never_share_a_state_item_or_a_lane() -> None:
    thread = parse_sqs_body(json.dumps({"thread_id": "x1"})).update.target
    conv = parse_sqs_body(conversation(metadata={})).update.target
    same = Target(kind=TargetKind.CONVERSATION, id="x1")
    assert thread.state_key == "x1"  # a thread's item is where it always was
    assert same.state_key != thread.state_key
    assert same.lane != thread.lane
    assert conv.id_field == "conversation_id"


def event(detail_type: str, detail: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": detail_type,
        "source": "app",
        "account": "123456789012",
        "time": "2026-12-01T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
        **envelope,
    }


def test_a_modify_conversation_event_carries_a_conversation_update() -> None:
    parsed = parse_update_document(event("ModifyConversation", {"conversation_id": "c1", "metadata": {}}))
    assert parsed.update.target.kind is TargetKind.CONVERSATION
    assert parsed.event_time_ms == 1_796_119_200_000


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        # a foreign event is named as such first, whatever else it lacks
        ({"detail-type": "Scheduled Event", "detail": {}}, "not an update event"),
        (event("EC2 Instance State-change Notification", {"state": "running"}), "not an update event"),
        ({"detail-type": "ModifyThread", "detail": {"thread_id": "t"}}, "invalid EventBridge envelope"),
        (event("ModifyThread", {"conversation_id": "c", "metadata": {}}), "use ModifyConversation"),
        (event("ModifyConversation", {"thread_id": "t"}), "use ModifyThread"),
        (event("ModifyThread", {"thread_id": "t", "metadata": 1}), "detail.metadata"),
        (event("ModifyThread", {"thread_id": "t"}, time="1969-12-31T23:59:59Z"), "after 1970"),
    ],
)
def test_event_reasons_say_first_what_is_wrong(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidUpdate, match=reason):
        parse_update_document(document)


def test_a_version_in_the_event_makes_a_time_before_1970_harmless() -> None:
    document = event("ModifyThread", {"thread_id": "t", "version": 5}, time="1969-12-31T23:59:59Z")
    assert parse_update_document(document).update.version == 5
