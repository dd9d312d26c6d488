"""Configuration errors, every auth mode end to end, key rotation, and secret hygiene in the output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.lambda_events import eventbridge_event, sqs_event
from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import (
    API_KEY,
    CONFIG_ID,
    PROVIDER_AUTH,
    SECRET_VALUES,
    VIRTUAL_KEY,
    AwsResources,
    FunctionLogs,
    Invoker,
    failed_ids,
)
from thread_updater.errors import ConfigurationError


def all_ids(event: dict[str, Any]) -> set[str]:
    return {record["messageId"] for record in event["Records"]}


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("{not json", "not valid JSON"),
        ({"api_key": API_KEY}, "no routing mode"),
        ({"api_key": API_KEY, "virtual_key": VIRTUAL_KEY, "config": CONFIG_ID}, "mix"),
        ({"virtual_key": VIRTUAL_KEY}, "'api_key' is missing"),
    ],
)
def test_invalid_secret_hands_every_record_back_and_says_why(
    secret: Any,
    problem: str,
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
) -> None:
    # Given a secret that cannot be used
    aws.put_secret(secret)
    event = sqs_event([{"thread_id": "t1"}, {"thread_id": "t2"}, {"thread_id": "t1"}])

    # When a batch arrives
    response = invoke(event)

    # Then every record goes back, nothing is sent or dead-lettered, and the log names the problem
    assert failed_ids(response) == all_ids(event)
    assert portkey.requests == []
    assert aws.dead_letters() == []
    output = logs.text()
    assert problem in output
    assert all(value not in output for value in SECRET_VALUES)


def test_missing_secret_hands_every_record_back(
    invoke: Invoker, aws: AwsResources, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given the secret does not exist
    monkeypatch.setenv("PORTKEY_SECRET_ID", "deleted-secret")
    event = sqs_event([{"thread_id": "t1"}])

    # When a batch arrives, Then it is handed back and the log says the secret could not be read
    assert failed_ids(invoke(event)) == all_ids(event)
    assert "'deleted-secret' could not be read" in logs.text()
    assert aws.dead_letters() == []


@pytest.mark.parametrize("missing", ["PORTKEY_SECRET_ID", "DLQ_URL"])
def test_missing_environment_variable_hands_every_record_back(
    missing: str, invoke: Invoker, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given a required variable is not set
    monkeypatch.delenv(missing)
    event = sqs_event(["not json", {"thread_id": "t1"}])

    # When a batch arrives, Then even the invalid record is handed back (never dead-lettered on config errors)
    assert failed_ids(invoke(event)) == all_ids(event)
    assert f"{missing}: Field required" in logs.text()


@pytest.mark.parametrize("value", ["merged", "REPLACE ", ""])
def test_an_unknown_metadata_semantics_is_a_loud_configuration_error_and_nothing_is_sent(
    value: str, invoke: Invoker, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs, portkey: PortkeyStandIn
) -> None:
    # Given METADATA_SEMANTICS names neither merge nor replace
    monkeypatch.setenv("METADATA_SEMANTICS", value)
    event = sqs_event([{"thread_id": "t1", "metadata": {"a": "1"}}])

    # When a batch arrives, Then it is handed back whole, one ERROR names the variable, nothing is sent
    assert failed_ids(invoke(event)) == all_ids(event)
    errors = [line for line in logs.lines() if line.get("level") == "ERROR"]
    assert len(errors) == 1
    assert "METADATA_SEMANTICS" in errors[0]["message"] + str(errors[0].get("error", ""))
    assert portkey.requests == []


def test_configuration_error_fails_an_eventbridge_invocation(
    invoke: Invoker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "many")
    with pytest.raises(ConfigurationError, match="MAX_ATTEMPTS"):
        invoke(eventbridge_event({"thread_id": "t1"}))


MODES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "virtual-key": ({"virtual_key": VIRTUAL_KEY}, {"x-portkey-virtual-key": VIRTUAL_KEY}),
    "provider-auth": (
        {"provider": "azure-openai", "provider_auth": PROVIDER_AUTH},
        {"x-portkey-provider": "azure-openai", "authorization": f"Bearer {PROVIDER_AUTH}"},
    ),
    "config-id": ({"config": CONFIG_ID}, {"x-portkey-config": CONFIG_ID}),
    "config-object": (
        {"config": {"provider": "azure-openai", "api_key": PROVIDER_AUTH}},
        {
            "x-portkey-config": json.dumps(
                {"provider": "azure-openai", "api_key": PROVIDER_AUTH}, separators=(",", ":")
            )
        },
    ),
    "custom-host": (
        {"provider": "openai", "provider_auth": PROVIDER_AUTH, "custom_host": "http://127.0.0.1:9/v1"},
        {
            "x-portkey-provider": "openai",
            "authorization": f"Bearer {PROVIDER_AUTH}",
            "x-portkey-custom-host": "http://127.0.0.1:9/v1",
        },
    ),
    "catalog": ({"provider": "@azure-prod"}, {"x-portkey-provider": "@azure-prod"}),
}
ROUTING_HEADERS = {
    "x-portkey-virtual-key",
    "x-portkey-provider",
    "authorization",
    "x-portkey-config",
    "x-portkey-custom-host",
}


@pytest.mark.parametrize("mode", MODES)
def test_every_auth_mode_sends_exactly_its_headers(
    mode: str, invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn
) -> None:
    # Given a secret in this routing mode
    routing, expected = MODES[mode]
    aws.put_secret({"api_key": API_KEY, **routing})

    # When an update is applied
    assert invoke(sqs_event([{"thread_id": "t1"}])) == {"batchItemFailures": []}

    # Then the request carries the API key, this mode's headers and no other mode's
    [request] = portkey.requests
    assert request.headers["x-portkey-api-key"] == API_KEY
    sent = {name: value for name, value in request.headers.items() if name in ROUTING_HEADERS}
    assert sent == expected


def test_rotated_key_is_refetched_once_in_a_warm_container(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn
) -> None:
    # Given a warm container that cached the old key
    portkey.set_api_keys({API_KEY})
    assert invoke(sqs_event([{"thread_id": "t1"}])) == {"batchItemFailures": []}

    # When the key is rotated in Secrets Manager and Portkey stops accepting the old one
    aws.put_secret({"api_key": "pk-rotated-key", "virtual_key": VIRTUAL_KEY})
    portkey.set_api_keys({"pk-rotated-key"})
    response = invoke(sqs_event([{"thread_id": "t1"}, {"thread_id": "t2"}, {"thread_id": "t3"}]))

    # Then the 401s trigger one refresh and every update is applied with the new key
    assert response == {"batchItemFailures": []}
    statuses = [request.status for request in portkey.requests]
    assert statuses.count(401) >= 1
    assert statuses.count(200) == 4
    assert portkey.requests[-1].headers["x-portkey-api-key"] == "pk-rotated-key"


def test_refused_credentials_after_refresh_are_a_configuration_error(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given Portkey refuses the key, even freshly fetched
    portkey.set_api_keys({"some-other-key"})
    event = sqs_event([{"thread_id": "t1"}, {"thread_id": "t1"}, {"thread_id": "t2"}])

    # When a batch arrives
    response = invoke(event)

    # Then every record is handed back, none is dead-lettered, and each request was tried at most twice
    assert failed_ids(response) == all_ids(event)
    assert aws.dead_letters() == []
    assert all(request.status == 401 for request in portkey.requests)
    assert len(portkey.requests) <= 4
    assert "refused the credentials (HTTP 401) after refreshing" in logs.text()


def test_eventbridge_configuration_error_is_logged_and_counted(
    invoke: Invoker, aws: AwsResources, logs: FunctionLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a secret without a routing mode
    aws.put_secret({"api_key": API_KEY})

    # When an EventBridge event arrives, Then the invocation fails loudly: an ERROR line and the metric
    with pytest.raises(ConfigurationError, match="no routing mode"):
        invoke(eventbridge_event({"thread_id": "t1"}))
    assert any(line["level"] == "ERROR" and "configuration error" in line["message"] for line in logs.lines())
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    [counted] = [document for document in emf if "ConfigurationErrors" in document]
    assert counted["ConfigurationErrors"] == [1.0]
    # with the dimensions ConfigurationErrorsAlarm and the dashboard select on
    [dimensions] = counted["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert sorted(dimensions) == ["service", "source"]
    assert counted["source"] == "eventbridge"


def test_a_misspelt_variable_is_named_once_per_container_with_the_one_it_resembles(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment that misspells MAX_ATTEMPTS (its default of 3 applies instead of 5)
    monkeypatch.setenv("MAX_ATEMPTS", "5")
    monkeypatch.setenv("PORTKEY_MAXRPS_TYPO", "1")

    # When two invocations run in the same container
    for thread_id in ("t-1", "t-2"):
        assert invoke(sqs_event([{"thread_id": thread_id}])) == {"batchItemFailures": []}

    # Then one WARNING names each unknown variable (never its value), with the closest known name,
    # and the updates are applied as usual
    [warning] = [line for line in logs.lines() if "unknown variables" in line["message"]]
    assert warning["level"] == "WARNING"
    assert "MAX_ATEMPTS (did you mean MAX_ATTEMPTS?)" in warning["message"]
    assert warning["unknown_variables"] == ["MAX_ATEMPTS", "PORTKEY_MAXRPS_TYPO"]
    assert len(portkey.requests) == 2


def test_the_known_variables_are_the_settings_aliases_and_every_one_has_an_own_prefix() -> None:
    from thread_updater.settings import OWN_PREFIXES, Settings, known_variables, unknown_variables

    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    assert known_variables() == aliases
    assert unknown_variables(dict.fromkeys(aliases, "x")) == []
    own = {name for name in aliases if name.startswith(OWN_PREFIXES)}
    assert aliases - own == {"POWERTOOLS_PARAMETERS_MAX_AGE"}  # Powertools' own variable
