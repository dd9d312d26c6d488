"""Infrastructure checks: template.yaml, its offline validation, samconfig.toml and events/*.json."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsModel

from thread_updater.settings import unknown_variables
from tools.validate_template import load_sam_template, validate

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
VALIDATOR = REPO_ROOT / "tools" / "validate_template.py"
EVENTS = REPO_ROOT / "events"

FUNCTION_ID = "ModifyThreadFunction"
EXPECTED_ENV_VARS = {
    "PORTKEY_SECRET_ID",
    "PORTKEY_BASE_URL",
    "DLQ_URL",
    "MAX_ATTEMPTS",
    "MAX_CONCURRENCY",
    "PORTKEY_MAX_RPS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_PARAMETERS_MAX_AGE",
    "THREAD_STATE_TABLE",
    "THREAD_STATE_TTL_DAYS",
    "LATE_WRITE_HEAL_DELAY_SECONDS",
    "METADATA_SEMANTICS",
}
# Managed policies SAM itself attaches: basic logging, and the SQS poller for the SQS event.
SAM_ADDED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}
ACCOUNT = "123456789012"
REGION = "us-east-1"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_sam_template(TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = template["Resources"]
    return result


@pytest.fixture(scope="module")
def function_props(resources: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = resources[FUNCTION_ID]["Properties"]
    return result


@pytest.fixture(scope="module")
def function_globals(template: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = template["Globals"]["Function"]
    return result


@pytest.fixture(scope="module")
def validation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the validation script once per module, exactly as a developer or CI would."""
    output = tmp_path_factory.mktemp("validate") / "translated.json"
    completed = subprocess.run(
        [sys.executable, str(VALIDATOR), "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=110,
    )
    return completed, output


@pytest.fixture(scope="module")
def translated(validation_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    completed, output = validation_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def _load_json(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def _walk_statements(policy_document: Any) -> Iterator[dict[str, Any]]:
    statements = policy_document.get("Statement", [])
    yield from statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- validation


def test_validation_script_passes(validation_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Given the committed template, when tools/validate_template.py runs (cfn-lint, SAM
    translation, cfn-lint on the translation), then it exits 0 with no error-level finding."""
    completed, output = validation_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "[Error]" not in completed.stdout
    assert completed.stdout.strip().endswith("VALID")
    for step in ("cfn-lint on", "SAM translation of", "cfn-lint on the translated"):
        assert step in completed.stdout
    assert output.is_file()
    # and nothing that looks like a failure either: no warning, every step "ok"
    assert "[Warning]" not in completed.stdout
    assert "W3037" not in completed.stdout
    assert completed.stdout.count(": ok\n") == 3, completed.stdout


def test_w3037_is_ignored_only_for_the_function_and_what_sam_generates_from_it(
    tmp_path: Path, translated: dict[str, Any], resources: dict[str, Any]
) -> None:
    # GIVEN the function's cfn-lint directives: W3037 alone (SQSPollerPolicy's batch actions)
    directives = {"cfn-lint": {"config": {"ignore_checks": ["W3037"]}}}
    assert resources[FUNCTION_ID]["Metadata"] == directives
    # THEN the translation carries them onto the execution role SAM generates, and not beyond
    assert translated["Resources"][f"{FUNCTION_ID}Role"]["Metadata"] == directives
    assert "Metadata" not in translated["Resources"]["FunctionPermissionsBoundary"]

    # WHEN the hand-written permissions boundary names a batch action
    source = TEMPLATE.read_text()
    old = "              - sqs:ChangeMessageVisibility\n            Resource: !GetAtt SourceQueue.Arn"
    assert source.count(old) == 1, "the mutation no longer applies; update this test"
    broken = tmp_path / "template.yaml"
    broken.write_text(
        source.replace(
            old, old.replace("Visibility\n", "Visibility\n              - sqs:DeleteMessageBatch\n")
        )
    )
    result = validate(broken)

    # THEN W3037 still reports it there
    w3037 = [f for f in result.findings if f.rule == "W3037"]
    assert [f.location.split(" ", 1)[1].split("/")[1] for f in w3037] == ["FunctionPermissionsBoundary"], (
        w3037
    )


_WINDOW = """            MaximumBatchingWindowInSeconds: !If
              - IsFifo
              - !Ref AWS::NoValue
              - !Ref MaximumBatchingWindowInSeconds"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            _WINDOW, "            MaximumBatchingWindowInSeconds: 900", "E3034", id="batching-window-900"
        ),
        pytest.param(
            "QueueName: !GetAtt DeadLetterQueue.QueueName",
            "QueueName: !GetAtt DeadLetterQueue.Name",
            "E1019",
            id="bad-getatt",
        ),
        pytest.param("Type: EventBridgeRule", "Type: EventBridgeRul", "Event Type is", id="bad-sam-event"),
        pytest.param(
            "      Metrics:\n        - Id: rejected404\n",
            "      MetricName: UpdatesRejectedNotFound\n      Metrics:\n        - Id: rejected404\n",
            "E3020",
            id="alarm-metric-and-metric-math",
        ),
        pytest.param(
            '"${SourceQueue.QueueName}", { "label": "visible (waiting)" }',
            '"${SourceQueue.QueueNam}", { "label": "visible (waiting)" }',
            "E1019",
            id="dashboard-bad-getatt",
        ),
    ],
)
def test_validation_rejects_broken_template(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """Given a copy of the template with one deliberate mistake, when it is validated,
    then validation fails with an error-level finding naming the problem."""
    source = TEMPLATE.read_text()
    assert old in source, "the mutation no longer applies; update this test"
    broken = tmp_path / "template.yaml"
    broken.write_text(source.replace(old, new, 1))

    result = validate(broken)

    assert not result.ok
    assert any(expected in f"{f.rule} {f.message}" for f in result.errors), result.findings


# --------------------------------------------------------------------------- function


def test_function_handler_code_and_runtime(
    function_props: dict[str, Any], function_globals: dict[str, Any]
) -> None:
    """Given the function, then it runs src/handler.lambda_handler on a Python runtime at
    least as new as the project's requires-python, with bounded timeout and memory."""
    assert function_props["CodeUri"] == "src/"
    assert function_props["Handler"] == "handler.lambda_handler"
    assert (REPO_ROOT / "src").is_dir()

    runtime = function_props.get("Runtime", function_globals.get("Runtime"))
    match = re.fullmatch(r"python3\.(\d+)", str(runtime))
    assert match, runtime
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    min_minor = int(re.fullmatch(r">=3\.(\d+)", pyproject["project"]["requires-python"]).group(1))  # type: ignore[union-attr]
    assert int(match.group(1)) >= min_minor
    assert function_globals["Timeout"] == 60
    assert function_globals["MemorySize"] == 256


def test_environment_variables_are_exactly_the_documented_ones(function_props: dict[str, Any]) -> None:
    """Given the function environment, then it holds exactly the documented variables,
    wired to the parameters and the DLQ."""
    variables = function_props["Environment"]["Variables"]
    assert set(variables) == EXPECTED_ENV_VARS
    assert variables["PORTKEY_SECRET_ID"] == {"Ref": "PortkeySecretArn"}
    assert variables["PORTKEY_BASE_URL"] == {"Ref": "PortkeyBaseUrl"}
    assert variables["DLQ_URL"] == {"Ref": "DeadLetterQueue"}
    assert variables["MAX_ATTEMPTS"] == {"Ref": "MaxAttempts"}
    assert variables["MAX_CONCURRENCY"] == {"Ref": "MaxConcurrency"}
    assert variables["PORTKEY_MAX_RPS"] == {"Ref": "PortkeyMaxRps"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "portkey-thread-updater"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "PortkeyThreadUpdater"
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert str(variables["POWERTOOLS_PARAMETERS_MAX_AGE"]) == "300"
    assert variables["THREAD_STATE_TABLE"] == {"Ref": "ThreadStateTable"}
    assert variables["THREAD_STATE_TTL_DAYS"] == {"Ref": "ThreadStateTtlDays"}
    assert variables["LATE_WRITE_HEAL_DELAY_SECONDS"] == {"Ref": "LateWriteHealDelaySeconds"}
    # and the function knows every one of its own (it warns about unknown ones with its prefixes)
    assert unknown_variables(variables) == []


def test_policies_are_only_scoped_sam_policy_templates(function_props: dict[str, Any]) -> None:
    """Given the function's Policies, then they are SAM policy templates, scoped to the secret
    parameter, the DLQ, the source queue and the state table, and nothing else (no managed policies,
    no inline '*')."""
    assert function_props["Policies"] == [
        {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "PortkeySecretArn"}}},
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}},
        {"SQSPollerPolicy": {"QueueName": {"Fn::GetAtt": ["SourceQueue", "QueueName"]}}},
        {"DynamoDBWritePolicy": {"TableName": {"Ref": "ThreadStateTable"}}},
    ]
    assert "Role" not in function_props


def test_translated_iam_has_no_wildcards(translated: dict[str, Any]) -> None:
    """Given the translated template, when every IAM/queue-policy statement is inspected, then no
    statement allows Action '*' (or 'service:*') or Resource '*', and the only managed
    policies are the ones SAM attaches for logging and SQS polling."""
    statements: list[dict[str, Any]] = []
    for resource in translated["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            assert set(props.get("ManagedPolicyArns", [])) <= SAM_ADDED_MANAGED_POLICIES
            for policy in props.get("Policies", []):
                statements.extend(_walk_statements(policy["PolicyDocument"]))
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::SQS::QueuePolicy"}:
            statements.extend(_walk_statements(props["PolicyDocument"]))

    actions = [a for s in statements for a in _as_list(s["Action"])]
    assert "secretsmanager:GetSecretValue" in actions
    assert any(str(a).startswith("sqs:SendMessage") for a in actions)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert action != "*"
            assert not str(action).endswith(":*"), action
        for resource_value in _as_list(statement["Resource"]):
            assert resource_value != "*"
            assert isinstance(resource_value, dict), (
                f"expected an intrinsic-scoped resource: {resource_value}"
            )


# --------------------------------------------------------------------------- SQS


def test_sqs_event_reports_batch_item_failures(function_props: dict[str, Any]) -> None:
    """Given the SQS event, then it reads SourceQueue with partial batch responses and takes
    its batching/scaling settings from the parameters."""
    event = function_props["Events"]["SqsUpdates"]
    assert event["Type"] == "SQS"
    props = event["Properties"]
    assert props["Queue"] == {"Fn::GetAtt": ["SourceQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == {"Ref": "BatchSize"}
    # FIFO event sources reject a batching window: it is dropped for FIFO only.
    assert props["MaximumBatchingWindowInSeconds"] == {
        "Fn::If": ["IsFifo", {"Ref": "AWS::NoValue"}, {"Ref": "MaximumBatchingWindowInSeconds"}]
    }
    # SqsScalingMode chooses ScalingConfig or ProvisionedPollerConfig (test_scaling_mode_... below).
    assert props["ScalingConfig"] == {
        "Fn::If": [
            "IsProvisionedPolling",
            {"Ref": "AWS::NoValue"},
            {"MaximumConcurrency": {"Ref": "ScalingMaximumConcurrency"}},
        ]
    }


# --------------------------------------------------------------------------- SQS scaling mode

SCALING_PARAMETERS = (
    "SqsScalingMode",
    "ScalingMaximumConcurrency",
    "ProvisionedMinimumPollers",
    "ProvisionedMaximumPollers",
)


def _parameter_values(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    """Every parameter's value as CloudFormation sees it (a string): its default, or an override."""
    values = {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}
    return {**values, **overrides}


def _evaluate(expression: Any, values: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The intrinsic functions this template's Rules and Conditions use, as CloudFormation evaluates them."""
    if not isinstance(expression, dict) or len(expression) != 1:
        return str(expression) if isinstance(expression, (int, float)) else expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        return values[argument]
    if function == "Condition":
        return _evaluate(conditions[argument], values, conditions)
    if function == "Fn::Equals":
        left, right = (_evaluate(item, values, conditions) for item in argument)
        return left == right
    if function == "Fn::Not":
        return not _evaluate(argument[0], values, conditions)
    if function == "Fn::And":
        return all(_evaluate(item, values, conditions) for item in argument)
    if function == "Fn::Or":
        return any(_evaluate(item, values, conditions) for item in argument)
    if function == "Fn::Contains":
        haystack, needle = (_evaluate(item, values, conditions) for item in argument)
        return needle in [_evaluate(item, values, conditions) for item in haystack]
    raise AssertionError(f"not evaluated here: {function}")


def _failed_rules(template: dict[str, Any], values: dict[str, str]) -> set[str]:
    """The template Rules whose RuleCondition holds and an Assert does not: CloudFormation refuses those."""
    conditions = template["Conditions"]
    failed = set()
    for name, rule in template["Rules"].items():
        if "RuleCondition" in rule and not _evaluate(rule["RuleCondition"], values, conditions):
            continue
        if not all(_evaluate(item["Assert"], values, conditions) for item in rule["Assertions"]):
            failed.add(name)
    return failed


def _resolve_ifs(value: Any, values: dict[str, str], conditions: dict[str, Any]) -> Any:
    """``value`` with every Fn::If decided and AWS::NoValue dropped (None: the property is absent)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            chosen = when_true if _evaluate(conditions[name], values, conditions) else when_false
            return _resolve_ifs(chosen, values, conditions)
        if value == {"Ref": "AWS::NoValue"}:
            return None
        resolved = {key: _resolve_ifs(item, values, conditions) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not None}
    if isinstance(value, list):
        return [_resolve_ifs(item, values, conditions) for item in value]
    return value


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param(
            "maximum-concurrency",
            {"ScalingConfig": {"MaximumConcurrency": {"Ref": "ScalingMaximumConcurrency"}}},
            id="maximum-concurrency",
        ),
        pytest.param(
            "provisioned",
            {
                "ProvisionedPollerConfig": {
                    "MinimumPollers": {"Ref": "ProvisionedMinimumPollers"},
                    "MaximumPollers": {"Ref": "ProvisionedMaximumPollers"},
                }
            },
            id="provisioned",
        ),
    ],
)
def test_scaling_mode_sets_exactly_one_of_scaling_config_and_provisioned_pollers(
    template: dict[str, Any], function_props: dict[str, Any], mode: str, expected: dict[str, Any]
) -> None:
    # GIVEN the SQS event as CloudFormation resolves it for one SqsScalingMode
    assert template["Parameters"]["SqsScalingMode"]["AllowedValues"] == ["maximum-concurrency", "provisioned"]
    values = _parameter_values(template, SqsScalingMode=mode)
    # WHEN its conditions are decided
    props = _resolve_ifs(function_props["Events"]["SqsUpdates"]["Properties"], values, template["Conditions"])
    # THEN exactly one of the two mutually exclusive scaling properties is set, from its parameters
    scaling = {key: props[key] for key in ("ScalingConfig", "ProvisionedPollerConfig") if key in props}
    assert scaling == expected


def test_the_translation_passes_both_scaling_properties_to_the_event_source_mapping(
    translated: dict[str, Any], function_props: dict[str, Any]
) -> None:
    # GIVEN the template translated by the pinned aws-sam-translator (the SAM CLI's, test_sam_cli.py)
    (mapping,) = [
        r["Properties"]
        for r in translated["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    event = function_props["Events"]["SqsUpdates"]["Properties"]
    # THEN the mapping carries ScalingConfig and ProvisionedPollerConfig unchanged, conditions included
    assert mapping["ScalingConfig"] == event["ScalingConfig"]
    assert mapping["ProvisionedPollerConfig"] == event["ProvisionedPollerConfig"]


@pytest.mark.parametrize(
    ("overrides", "refused_by"),
    [
        pytest.param({}, set(), id="defaults"),
        pytest.param({"ScalingMaximumConcurrency": "50"}, set(), id="maximum-concurrency-raised"),
        pytest.param({"SqsScalingMode": "provisioned"}, set(), id="provisioned-defaults"),
        pytest.param(
            {
                "SqsScalingMode": "provisioned",
                "ProvisionedMinimumPollers": "10",
                "ProvisionedMaximumPollers": "400",
            },
            set(),
            id="provisioned-sized",
        ),
        pytest.param(
            {"ProvisionedMaximumPollers": "400"},
            {"PollersOnlyInProvisionedMode"},
            id="pollers-without-provisioned",
        ),
        pytest.param(
            {"ProvisionedMinimumPollers": "5"},
            {"PollersOnlyInProvisionedMode"},
            id="minimum-without-provisioned",
        ),
        pytest.param(
            {"SqsScalingMode": "provisioned", "ScalingMaximumConcurrency": "50"},
            {"NoMaximumConcurrencyInProvisionedMode"},
            id="maximum-concurrency-in-provisioned",
        ),
        pytest.param(
            {"SourceQueueType": "fifo", "BatchSize": "20"}, {"FifoBatchSize"}, id="fifo-batch-above-10"
        ),
        pytest.param(
            {"BatchSize": "100", "MaximumBatchingWindowInSeconds": "0"},
            {"BatchingWindowForLargeBatches"},
            id="large-batch-without-window",
        ),
    ],
)
def test_rules_refuse_a_value_the_chosen_scaling_mode_would_ignore(
    template: dict[str, Any], overrides: dict[str, str], refused_by: set[str]
) -> None:
    # GIVEN parameter values for a deploy
    values = _parameter_values(template, **overrides)
    # WHEN CloudFormation evaluates the template's Rules
    failed = _failed_rules(template, values)
    # THEN exactly the rule for the mistake refuses the deploy (and nothing refuses a valid combination)
    assert failed == refused_by


def test_samconfig_scaling_values_pass_the_rules_with_at_most_as_many_minimum_as_maximum_pollers(
    template: dict[str, Any],
) -> None:
    # GIVEN samconfig.toml's parameter overrides
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    overrides = dict(
        item.split("=", 1) for item in config["default"]["deploy"]["parameters"]["parameter_overrides"]
    )
    values = _parameter_values(template, **{name: overrides[name] for name in SCALING_PARAMETERS})
    # THEN no rule refuses them, and the pollers' bounds are ordered (a check Rules cannot express)
    assert _failed_rules(template, values) == set()
    assert int(values["ProvisionedMinimumPollers"]) <= int(values["ProvisionedMaximumPollers"])


def test_visibility_timeout_covers_six_function_timeouts(
    template: dict[str, Any], resources: dict[str, Any], function_props: dict[str, Any]
) -> None:
    """Given the source queue, then its visibility timeout is at least 6x the function
    timeout plus the largest allowed batching window (AWS guidance for SQS event sources)."""
    timeout = int(function_props.get("Timeout", template["Globals"]["Function"]["Timeout"]))
    max_window = int(template["Parameters"]["MaximumBatchingWindowInSeconds"]["MaxValue"])
    visibility = int(resources["SourceQueue"]["Properties"]["VisibilityTimeout"])
    assert visibility >= 6 * timeout
    assert visibility >= 6 * timeout + max_window
    assert visibility <= 43200  # SQS maximum


def test_source_queue_redrives_to_dlq(resources: dict[str, Any]) -> None:
    """Given the source queue, then failed receives move to the DLQ after MaxReceiveCount,
    and both queues are encrypted, with the DLQ keeping messages longer."""
    source = resources["SourceQueue"]["Properties"]
    dlq = resources["DeadLetterQueue"]["Properties"]
    assert source["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert source["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True
    assert source["MessageRetentionPeriod"] == 4 * 24 * 3600
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_base_url_parameter_requires_https(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["PortkeyBaseUrl"]["AllowedPattern"])
    assert pattern.match("https://api.portkey.ai/v1")
    assert not pattern.match("http://gateway.internal:8787/v1")


def test_fifo_mode_switches_both_queues(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """Given SourceQueueType=fifo, then the source queue and its DLQ both become named .fifo queues
    (the source without content-based deduplication: identical updates A, B, A must all arrive);
    otherwise they stay unnamed standard queues."""
    assert template["Parameters"]["SourceQueueType"]["AllowedValues"] == ["standard", "fifo"]
    assert template["Conditions"]["IsFifo"] == {"Fn::Equals": [{"Ref": "SourceQueueType"}, "fifo"]}
    for logical_id, suffix, content_dedup in (
        ("SourceQueue", "-updates.fifo", False),
        ("DeadLetterQueue", "-dlq.fifo", True),
    ):
        props = resources[logical_id]["Properties"]
        assert props["FifoQueue"] == {"Fn::If": ["IsFifo", True, {"Ref": "AWS::NoValue"}]}
        assert props["ContentBasedDeduplication"] == {
            "Fn::If": ["IsFifo", content_dedup, {"Ref": "AWS::NoValue"}]
        }
        assert props["QueueName"] == {
            "Fn::If": ["IsFifo", {"Fn::Sub": "${AWS::StackName}" + suffix}, {"Ref": "AWS::NoValue"}]
        }


# --------------------------------------------------------------------------- EventBridge / async


def test_eventbridge_rule_matches_modify_thread_events(function_props: dict[str, Any]) -> None:
    """Given the EventBridge rule event, then it matches detail-types ModifyThread and
    ModifyConversation from the configured source on the configured bus, with bounded delivery
    retries and a declared DLQ."""
    event = function_props["Events"]["ModifyThreadRule"]
    assert event["Type"] == "EventBridgeRule"
    props = event["Properties"]
    assert props["EventBusName"] == {"Ref": "EventBusName"}
    assert props["Pattern"] == {
        "source": [{"Ref": "EventSource"}],
        "detail-type": ["ModifyThread", "ModifyConversation"],
    }
    assert 0 <= props["RetryPolicy"]["MaximumRetryAttempts"] <= 185
    assert 60 <= props["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86400
    assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventBridgeDeliveryDeadLetterQueue", "Arn"]}}


def test_eventbridge_delivery_dlq_is_declared_with_a_policy_for_the_rule_only(
    resources: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Given the EventBridge delivery DLQ, then the template declares it (kept 14 days, encrypted)
    with a queue policy letting only the function's rule send to it, and SAM adds no queue or
    queue policy of its own."""
    queue = resources["EventBridgeDeliveryDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"] == {
        "MessageRetentionPeriod": 1209600,
        "MaximumMessageSize": 1048576,
        "SqsManagedSseEnabled": True,
    }
    policy = resources["EventBridgeDeliveryDeadLetterQueuePolicy"]
    assert policy["Type"] == "AWS::SQS::QueuePolicy"
    assert policy["Properties"]["Queues"] == [{"Ref": "EventBridgeDeliveryDeadLetterQueue"}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["EventBridgeDeliveryDeadLetterQueue", "Arn"]}
    rule = f"{FUNCTION_ID}ModifyThreadRule"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}}
    assert translated["Resources"][rule]["Type"] == "AWS::Events::Rule"
    declared = {name for name, r in resources.items() if r["Type"].startswith("AWS::SQS::")}
    assert {
        name for name, r in translated["Resources"].items() if r["Type"].startswith("AWS::SQS::")
    } == declared


def test_event_invoke_config_dead_letters_async_failures(
    function_props: dict[str, Any], resources: dict[str, Any]
) -> None:
    """Given asynchronous (EventBridge) invokes, then Lambda retries them a bounded number of
    times within a bounded age and sends failures to a standard queue: the DLQ, or the
    separate AsyncDeadLetterQueue in FIFO mode (Lambda destinations cannot be FIFO queues)."""
    config = function_props["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 3600
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert on_failure["Destination"] == {
        "Fn::If": [
            "IsFifo",
            {"Fn::GetAtt": ["AsyncDeadLetterQueue", "Arn"]},
            {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        ]
    }
    async_dlq = resources["AsyncDeadLetterQueue"]
    assert async_dlq["Condition"] == "IsFifo"
    assert "FifoQueue" not in async_dlq["Properties"]


def test_translated_template_wires_event_sources(translated: dict[str, Any]) -> None:
    """Given the translated template, then SAM generated the SQS event source mapping, the
    EventBridge rule targeting the function, and the event-invoke config."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in translated["Resources"].values():
        by_type.setdefault(resource["Type"], []).append(resource.get("Properties", {}))
    (mapping,) = by_type["AWS::Lambda::EventSourceMapping"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (rule,) = by_type["AWS::Events::Rule"]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    (invoke_config,) = by_type["AWS::Lambda::EventInvokeConfig"]
    assert invoke_config["Qualifier"] == "$LATEST"


# --------------------------------------------------------------------------- parameters / outputs


def test_parameters_and_defaults(template: dict[str, Any]) -> None:
    """Given the parameters, then the documented defaults and bounds hold."""
    params = template["Parameters"]
    expected: dict[str, dict[str, Any]] = {
        "PortkeySecretArn": {},
        "PortkeyBaseUrl": {"Default": "https://api.portkey.ai/v1"},
        "MaxAttempts": {"Default": 3, "MinValue": 1, "MaxValue": 10},
        "MaxConcurrency": {"Default": 16, "MinValue": 1, "MaxValue": 256},
        "PortkeyMaxRps": {"Default": 0, "MinValue": 0, "MaxValue": 10000},
        "MaxReceiveCount": {"Default": 32},
        "BatchSize": {"Default": 10, "MinValue": 1, "MaxValue": 10000},
        "MaximumBatchingWindowInSeconds": {"Default": 1, "MinValue": 0, "MaxValue": 300},
        "ScalingMaximumConcurrency": {"Default": 10, "MinValue": 2, "MaxValue": 1000},
        "SqsScalingMode": {"Default": "maximum-concurrency"},
        "ProvisionedMinimumPollers": {"Default": 2, "MinValue": 2, "MaxValue": 200},
        "ProvisionedMaximumPollers": {"Default": 20, "MinValue": 2, "MaxValue": 10000},
        "EventSource": {"Default": "com.example.threads"},
        "EventBusName": {"Default": "default"},
        "SourceQueueType": {"Default": "standard"},
        "LogLevel": {"Default": "INFO"},
        "OldestMessageAgeAlarmSeconds": {"Default": 900, "MinValue": 60},
        "RejectedNotFoundAlarmThreshold": {"Default": 10, "MinValue": 0},
        "AlarmTopicArn": {"Default": ""},
        "ThreadStateTtlDays": {"Default": 45, "MinValue": 15},
        "LateWriteHealDelaySeconds": {"Default": 120, "MinValue": 10, "MaxValue": 43200},
        "MetadataSemantics": {"Default": "merge", "AllowedValues": ["merge", "replace"]},
    }
    assert set(params) == set(expected)
    for name, attributes in expected.items():
        for key, value in attributes.items():
            assert params[name][key] == value, (name, key)
    assert "Default" not in params["PortkeySecretArn"]
    assert re.fullmatch(
        params["PortkeySecretArn"]["AllowedPattern"],
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:portkey-thread-updater-AbCdEf",
    )
    # a name without the 6-character suffix Secrets Manager appends (a forgotten placeholder) is refused
    for incomplete in ("portkey-thread-updater", "portkey-AbCdE", "AbCdEf", "portkey-thread-updater-AbCdEf*"):
        secret_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{incomplete}"
        assert not re.fullmatch(params["PortkeySecretArn"]["AllowedPattern"], secret_arn), incomplete


def test_deploy_md_lists_every_parameter_once_with_the_templates_default_and_range(
    template: dict[str, Any],
) -> None:
    # GIVEN the parameters table of docs/deploy.md
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in (REPO_ROOT / "docs" / "deploy.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    params = template["Parameters"]
    listed = [row[0].strip("`") for row in rows if row[0].strip("`") in params]
    # THEN each parameter is there exactly once
    assert sorted(listed) == sorted(params)
    for name, default, meaning in (row[:3] for row in rows if row[0].strip("`") in params):
        parameter = params[name.strip("`")]
        # with the template's default
        if isinstance(parameter.get("Default"), int):
            assert default == str(parameter["Default"]), name
        # and, where it quotes a range, the template's MinValue-MaxValue
        quoted = re.search(r"\((\d+)\u2013(\d+)[;)]", meaning)
        if quoted and "MaxValue" in parameter:
            assert (int(quoted[1]), int(quoted[2])) == (parameter["MinValue"], parameter["MaxValue"]), name


# --------------------------------------------------------------------------- alarms / dashboard

NAMESPACE = "PortkeyThreadUpdater"
SERVICE = "portkey-thread-updater"
ALARM_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
# alarm -> (namespace, metric, dimension value of the single-metric alarm, statistic, threshold)
SINGLE_METRIC_ALARMS: dict[str, tuple[str, str, Any, str, Any]] = {
    "DeadLetterQueueMessagesAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]},
        "Maximum",
        0,
    ),
    "EventBridgeDeliveryDeadLetterQueueMessagesAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["EventBridgeDeliveryDeadLetterQueue", "QueueName"]},
        "Maximum",
        0,
    ),
    "AsyncDeadLetterQueueMessagesAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["AsyncDeadLetterQueue", "QueueName"]},
        "Maximum",
        0,
    ),
    "SourceQueueOldestMessageAgeAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        {"Fn::GetAtt": ["SourceQueue", "QueueName"]},
        "Maximum",
        {"Ref": "OldestMessageAgeAlarmSeconds"},
    ),
    "FunctionErrorsAlarm": ("AWS/Lambda", "Errors", {"Ref": FUNCTION_ID}, "Sum", 0),
    "FunctionThrottlesAlarm": ("AWS/Lambda", "Throttles", {"Ref": FUNCTION_ID}, "Sum", 0),
}
# metric-math alarms: alarm -> (custom metric summed over both sources, threshold)
SUM_OVER_SOURCES_ALARMS: dict[str, tuple[str, Any]] = {
    "RejectedNotFoundAlarm": ("UpdatesRejectedNotFound", {"Ref": "RejectedNotFoundAlarmThreshold"}),
    "ConfigurationErrorsAlarm": ("ConfigurationErrors", 0),
}
SUB_REFERENCE = re.compile(r"\$\{([^}!]+)\}")


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _description_text(description: Any, params: dict[str, Any]) -> str:
    """An AlarmDescription as CloudWatch shows it (a !Sub gets the parameters' defaults)."""
    if isinstance(description, dict):
        text = description["Fn::Sub"]
        return SUB_REFERENCE.sub(lambda m: str(params[m.group(1)]["Default"]), text)
    return str(description)


def test_alarm_set_and_actions(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """Given the alarms, then there is exactly the documented set; each notifies AlarmTopicArn on
    ALARM and OK only when it is set (Condition HasAlarmTopic), treats missing data as OK,
    and explains what it means and what to do in an AlarmDescription CloudWatch accepts."""
    alarms = _alarms(resources)
    assert set(alarms) == set(SINGLE_METRIC_ALARMS) | set(SUM_OVER_SOURCES_ALARMS)
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    pattern = template["Parameters"]["AlarmTopicArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-alerts")
    assert not re.fullmatch(pattern, f"arn:aws:sqs:{REGION}:{ACCOUNT}:queue")
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == ALARM_ACTIONS, name
        assert props["OKActions"] == ALARM_ACTIONS, name
        assert props["TreatMissingData"] == "notBreaching", name
        assert props["ComparisonOperator"] == "GreaterThanThreshold", name
        assert props["EvaluationPeriods"] == 1, name
        text = _description_text(props["AlarmDescription"], template["Parameters"])
        assert 150 <= len(text) <= 1024, (name, len(text))
        assert "${" not in text, name
    assert alarms["AsyncDeadLetterQueueMessagesAlarm"]["Condition"] == "IsFifo"
    assert all("Condition" not in a for n, a in alarms.items() if n != "AsyncDeadLetterQueueMessagesAlarm")


@pytest.mark.parametrize("name", sorted(SINGLE_METRIC_ALARMS))
def test_single_metric_alarms(resources: dict[str, Any], name: str) -> None:
    """Given each queue/function alarm, then it watches the right metric of the right resource
    with the right statistic and threshold over 5 minutes."""
    namespace, metric, dimension, statistic, threshold = SINGLE_METRIC_ALARMS[name]
    props = resources[name]["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (namespace, metric, statistic)
    key = "QueueName" if namespace == "AWS/SQS" else "FunctionName"
    assert props["Dimensions"] == [{"Name": key, "Value": dimension}]
    assert props["Threshold"] == threshold
    assert props["Period"] == 300


@pytest.mark.parametrize("name", sorted(SUM_OVER_SOURCES_ALARMS))
def test_metric_math_alarms_sum_both_sources(
    resources: dict[str, Any], function_props: dict[str, Any], name: str
) -> None:
    """Given the 404 and configuration-error alarms, then each is a SEARCH-free metric-math alarm
    summing the function's EMF metric over source=sqs and source=eventbridge (namespace and
    service as the function emits them), compared with its threshold."""
    metric, threshold = SUM_OVER_SOURCES_ALARMS[name]
    props = resources[name]["Properties"]
    assert not {"MetricName", "Namespace", "Statistic", "Dimensions", "Period"} & set(props)
    assert props["Threshold"] == threshold
    (expression,) = [q for q in props["Metrics"] if "Expression" in q]
    inputs = {q["Id"]: q for q in props["Metrics"] if "MetricStat" in q}
    assert expression["ReturnData"] is True
    assert all(q["ReturnData"] is False for q in inputs.values())
    assert "SEARCH" not in expression["Expression"].upper()
    assert expression["Expression"] == "SUM([" + ", ".join(f"FILL({i}, 0)" for i in inputs) + "])"
    variables = function_props["Environment"]["Variables"]
    sources = set()
    for query in inputs.values():
        stat = query["MetricStat"]
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
        assert stat["Metric"]["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
        assert stat["Metric"]["MetricName"] == metric
        dimensions = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        assert dimensions["service"] == variables["POWERTOOLS_SERVICE_NAME"] == SERVICE
        assert set(dimensions) == {"service", "source"}
        sources.add(dimensions["source"])
    assert sources == {"sqs", "eventbridge"}


def test_rejected_not_found_alarm(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """Given the 404 alarm, then it counts UpdatesRejectedNotFound against RejectedNotFoundAlarmThreshold
    (default 10 per 5 minutes) and tells the operator how to replay after fixing the route."""
    props = resources["RejectedNotFoundAlarm"]["Properties"]
    names = {q["MetricStat"]["Metric"]["MetricName"] for q in props["Metrics"] if "MetricStat" in q}
    assert names == {"UpdatesRejectedNotFound"}
    assert template["Parameters"]["RejectedNotFoundAlarmThreshold"]["Default"] == 10
    assert template["Parameters"]["OldestMessageAgeAlarmSeconds"]["Default"] == 900
    text = _description_text(props["AlarmDescription"], template["Parameters"])
    assert "More than 10 updates in 5 minutes" in text
    assert "dlq replay --category rejected --status 404" in text


def _substitute(body: str, template: dict[str, Any], resource_ids: set[str]) -> tuple[str, set[str]]:
    """Replace every ${...} of a !Sub string with a plausible value; returns the text and the names."""
    params = template["Parameters"]
    seen: set[str] = set()

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        seen.add(name)
        if name in params:
            return str(params[name]["Default"])
        if name.startswith("AWS::"):
            return {"AWS::Region": REGION, "AWS::StackName": "stack", "AWS::AccountId": ACCOUNT}[name]
        assert name.split(".")[0] in resource_ids, f"unknown reference ${{{name}}}"
        return f"resolved-{name.replace('.', '-')}"

    return SUB_REFERENCE.sub(value, body), seen


def _dashboard(
    template: dict[str, Any], resource_ids: set[str], *, fifo: bool
) -> tuple[dict[str, Any], set[str]]:
    """The dashboard body as deployed in one queue mode: the !Sub variables resolved by IsFifo."""
    body_template, variables = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"][
        "Fn::Sub"
    ]
    for name, choice in variables.items():
        condition, when_fifo, when_standard = choice["Fn::If"]
        assert condition == "IsFifo"
        chosen = when_fifo if fifo else when_standard
        text = chosen["Fn::Sub"] if isinstance(chosen, dict) else chosen
        body_template = body_template.replace(f"${{{name}}}", text)
    body_text, references = _substitute(body_template, template, resource_ids)
    return json.loads(body_text), references


def _widget_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric, dimensions, options) of each metric line of a widget (not expressions)."""
    result = []
    for line in widget["properties"].get("metrics", []):
        options = line[-1] if isinstance(line[-1], dict) else {}
        parts = line[:-1] if isinstance(line[-1], dict) else line
        if parts:
            namespace, metric, *dimension_pairs = parts
            dimensions = dict(zip(dimension_pairs[::2], dimension_pairs[1::2], strict=True))
            result.append((namespace, metric, dimensions, options))
    return result


def test_dashboard_body_is_valid_json_with_the_operating_views(
    template: dict[str, Any], resources: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Given the dashboard, then its !Sub body is valid JSON once substituted, references only
    existing resources/parameters (also after SAM translation), fits the 24-column grid, and
    shows updates applied/dead-lettered/retried, Portkey latency p50/p99, the source queue's
    depth and oldest age, the DLQ depth, function errors/throttles/duration and the alarms."""
    dashboard = resources["OperationsDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    body, references = _dashboard(template, set(translated["Resources"]), fifo=False)

    for widget in body["widgets"]:
        assert widget["x"] + widget["width"] <= 24
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == REGION
            ids = [o.get("id") for *_, o in _widget_metrics(widget)]
            for line in widget["properties"]["metrics"]:
                if isinstance(line[0], dict) and "expression" in line[0]:
                    used = set(re.findall(r"FILL\((\w+), 0\)", line[0]["expression"]))
                    assert used, line
                    assert used <= set(ids), line

    lines = [m for widget in body["widgets"] if widget["type"] == "metric" for m in _widget_metrics(widget)]
    custom = {(metric, dims["source"]) for namespace, metric, dims, _ in lines if namespace == NAMESPACE}
    for metric in ("UpdatesApplied", "UpdatesDeadLettered", "UpdatesRetried", "PortkeyLatency"):
        assert {(metric, "sqs"), (metric, "eventbridge")} <= custom, metric
    assert all(dims["service"] == SERVICE for ns, _, dims, _ in lines if ns == NAMESPACE)
    latency_stats = {o.get("stat") for _, metric, _, o in lines if metric == "PortkeyLatency"}
    assert latency_stats == {"p50", "p99"}
    source_queue = "resolved-SourceQueue-QueueName"
    queue_metrics = {(metric, dims.get("QueueName")) for ns, metric, dims, _ in lines if ns == "AWS/SQS"}
    assert ("ApproximateNumberOfMessagesVisible", source_queue) in queue_metrics
    assert ("ApproximateAgeOfOldestMessage", source_queue) in queue_metrics
    assert ("ApproximateNumberOfMessagesVisible", "resolved-DeadLetterQueue-QueueName") in queue_metrics
    function_metrics = {metric for ns, metric, dims, _ in lines if ns == "AWS/Lambda"}
    assert function_metrics == {"Errors", "Throttles", "Duration"}
    assert {dims["FunctionName"] for ns, _, dims, _ in lines if ns == "AWS/Lambda"} == {
        f"resolved-{FUNCTION_ID}"
    }

    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    unconditional = {n for n, a in _alarms(resources).items() if "Condition" not in a}
    assert set(alarm_widget["properties"]["alarms"]) == {f"resolved-{n}-Arn" for n in unconditional}
    assert {"OldestMessageAgeAlarmSeconds", "RejectedNotFoundAlarmThreshold", "AWS::Region"} <= references
    assert "OperationsDashboard" in translated["Resources"]
    assert _alarms(translated["Resources"]).keys() == _alarms(resources).keys()


def test_outputs_present(template: dict[str, Any]) -> None:
    """Given the outputs, then queue URLs/ARNs, the function ARN/name and the event bus are exported:
    everything the DLQ tool's variables (DLQ_URL, SOURCE_QUEUE_URL, EVENT_BUS_NAME, FUNCTION_ARN) need."""
    outputs = template["Outputs"]
    for name in (
        "SourceQueueUrl",
        "SourceQueueArn",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "FunctionArn",
        "FunctionName",
        "EventBusName",
    ):
        assert "Value" in outputs[name], name
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["SourceQueueUrl"]["Value"] == {"Ref": "SourceQueue"}
    assert outputs["FunctionName"]["Value"] == {"Ref": FUNCTION_ID}
    assert outputs["EventBusName"]["Value"] == {"Ref": "EventBusName"}


def test_samconfig(template: dict[str, Any]) -> None:
    """Given samconfig.toml, then it names the stack and a region, lints on validate, deploys with
    IAM capability, overrides every parameter the template declares exactly once, and uses
    events/env.json."""
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "portkey-thread-updater"
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", default["global"]["parameters"]["region"])
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    names = [item.split("=", 1)[0] for item in deploy["parameter_overrides"]]
    assert sorted(names) == sorted(set(names)), "a parameter is listed twice"
    overrides = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
    assert set(overrides) == set(template["Parameters"])
    assert default["local_invoke"]["parameters"]["env_vars"] == "events/env.json"


# --------------------------------------------------------------------------- events


def _check_sqs_records(event: Any) -> list[str]:
    SqsModel.model_validate(event)
    bodies: list[str] = []
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"].startswith(f"arn:aws:sqs:{REGION}:{ACCOUNT}:")
        assert record["awsRegion"] == REGION
        assert record["messageAttributes"] == {}
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert {
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        } <= set(record["attributes"])
        bodies.append(record["body"])
    ids = [r["messageId"] for r in event["Records"]]
    assert len(set(ids)) == len(ids)
    return bodies


def test_sqs_batch_event() -> None:
    """Given events/sqs-batch.json, then it is a valid SQS Lambda event with two valid
    updates and three invalid ones (not JSON, path-traversal id, non-string metadata)."""
    bodies = _check_sqs_records(_load_json("sqs-batch.json"))
    assert len(bodies) == 5
    assert json.loads(bodies[0]) == {
        "thread_id": "thread_abc123",
        "metadata": {"modified": "true", "user": "abc123"},
    }
    assert json.loads(bodies[1]) == {
        "thread_id": "thread_def456",
        "tool_resources": {"code_interpreter": {"file_ids": ["file-1"]}},
    }
    assert bodies[2] == "not json"
    assert json.loads(bodies[3]) == {"thread_id": "../assistants", "metadata": {}}
    assert json.loads(bodies[4]) == {"thread_id": "thread_ghi789", "metadata": {"count": 3}}


def test_eventbridge_event(template: dict[str, Any]) -> None:
    """Given events/eventbridge.json, then it is an EventBridge event the rule matches."""
    event = _load_json("eventbridge.json")
    model = EventBridgeModel.model_validate(event)
    assert model.version == "0"
    assert model.detail_type == "ModifyThread"
    assert model.source == template["Parameters"]["EventSource"]["Default"]
    assert event["detail"] == {"thread_id": "thread_abc123", "metadata": {"stage": "reviewed"}}


def test_eventbridge_via_sqs_event(template: dict[str, Any]) -> None:
    """Given events/eventbridge-via-sqs.json, then each SQS body is a JSON EventBridge event:
    one valid update and one whose metadata has 17 keys (over the 16-key limit)."""
    bodies = _check_sqs_records(_load_json("eventbridge-via-sqs.json"))
    assert len(bodies) == 2
    details: list[dict[str, Any]] = []
    for body in bodies:
        model = EventBridgeModel.model_validate_json(body)
        assert model.detail_type == "ModifyThread"
        assert model.source == template["Parameters"]["EventSource"]["Default"]
        assert isinstance(model.detail, dict)
        details.append(model.detail)
    assert 1 <= len(details[0]["metadata"]) <= 16
    assert len(details[1]["metadata"]) == 17


def test_sqs_conversation_event() -> None:
    """Given events/sqs-conversation.json, then it is a valid SQS Lambda event with two conversation
    updates and two invalid ones (tool_resources on a conversation, both ids named)."""
    bodies = [json.loads(body) for body in _check_sqs_records(_load_json("sqs-conversation.json"))]
    assert bodies == [
        {"conversation_id": "conv_abc123", "metadata": {"stage": "reviewed", "owner": "ops"}},
        {"conversation_id": "conv_def456", "version": 2, "metadata": {"migrated_from": "thread_def456"}},
        {
            "conversation_id": "conv_ghi789",
            "tool_resources": {"file_search": {"vector_store_ids": ["vs_abc123"]}},
        },
        {"thread_id": "thread_abc123", "conversation_id": "conv_abc123", "metadata": {"stage": "reviewed"}},
    ]


def test_eventbridge_conversation_event(template: dict[str, Any], function_props: dict[str, Any]) -> None:
    """Given events/eventbridge-conversation.json, then it is a ModifyConversation event the rule
    matches."""
    event = _load_json("eventbridge-conversation.json")
    model = EventBridgeModel.model_validate(event)
    assert model.detail_type == "ModifyConversation"
    pattern = function_props["Events"]["ModifyThreadRule"]["Properties"]["Pattern"]
    assert model.detail_type in pattern["detail-type"]
    assert model.source == template["Parameters"]["EventSource"]["Default"]
    assert event["detail"] == {"conversation_id": "conv_abc123", "metadata": {"stage": "reviewed"}}


def test_env_json_matches_template(function_props: dict[str, Any]) -> None:
    """Given events/env.json, then it sets exactly the template's environment variables for
    ModifyThreadFunction, as strings, with the template's constant values."""
    env = _load_json("env.json")
    assert set(env) == {FUNCTION_ID}
    variables = env[FUNCTION_ID]
    template_vars = function_props["Environment"]["Variables"]
    assert set(variables) == set(template_vars)
    assert all(isinstance(v, str) for v in variables.values())
    for name, value in template_vars.items():
        if not isinstance(value, dict):
            assert variables[name] == str(value), name


def test_state_table_is_on_demand_encrypted_recoverable_and_expires(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """Given the state table, then it is keyed by thread_id alone, on demand, encrypted, with
    point-in-time recovery and a TTL attribute; its TTL outlasts the DLQ's retention."""
    props = resources["ThreadStateTable"]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "thread_id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "thread_id", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    dlq_retention_days = resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] / 86400
    assert template["Parameters"]["ThreadStateTtlDays"]["MinValue"] > dlq_retention_days


def test_fifo_dashboard_shows_the_async_dead_letter_queue_alarm_and_depth(
    template: dict[str, Any], resources: dict[str, Any], translated: dict[str, Any]
) -> None:
    """Given FIFO mode (AsyncDeadLetterQueue and its alarm exist), then the alarm widget lists every
    alarm of the stack, the FIFO-only one included, and the DLQ widget shows that queue's depth."""
    body, _ = _dashboard(template, set(translated["Resources"]), fifo=True)

    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert set(alarm_widget["properties"]["alarms"]) == {f"resolved-{n}-Arn" for n in _alarms(resources)}
    assert "resolved-AsyncDeadLetterQueueMessagesAlarm-Arn" in alarm_widget["properties"]["alarms"]
    lines = [m for widget in body["widgets"] if widget["type"] == "metric" for m in _widget_metrics(widget)]
    depths = {
        dims.get("QueueName")
        for ns, metric, dims, _ in lines
        if metric == "ApproximateNumberOfMessagesVisible"
    }
    assert "resolved-AsyncDeadLetterQueue-QueueName" in depths


def test_max_concurrency_bounds_agree_with_the_function(template: dict[str, Any]) -> None:
    """Given the MaxConcurrency parameter, then it allows exactly what the function accepts."""
    from thread_updater.settings import Settings

    metadata = Settings.model_fields["max_concurrency"].metadata
    lowest = next(item.ge for item in metadata if hasattr(item, "ge"))
    highest = next(item.le for item in metadata if hasattr(item, "le"))
    parameter = template["Parameters"]["MaxConcurrency"]
    assert (parameter["MinValue"], parameter["MaxValue"]) == (lowest, highest)


def test_every_queue_sets_its_maximum_message_size_and_a_letter_for_the_largest_body_fits(
    resources: dict[str, Any],
) -> None:
    """Given the queues, then each sets MaximumMessageSize explicitly (the default changed over time),
    and the DLQ holds a letter for the largest source message: the body escaped as ASCII JSON (at
    most 3x: a 2-byte UTF-8 character becomes a 6-byte \\uXXXX escape) plus an envelope of 64 KiB."""
    queues = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    assert all("MaximumMessageSize" in properties for properties in queues.values()), queues
    source = queues["SourceQueue"]["MaximumMessageSize"]
    assert source == 256 * 1024
    assert queues["DeadLetterQueue"]["MaximumMessageSize"] >= 3 * source + 64 * 1024
