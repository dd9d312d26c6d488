"""Whether a copy can reach the function: checked before anything is sent, so nothing is deleted
when the copy would go nowhere.

A source queue must exist and be readable by us (a queue we cannot write to fails the send, which
keeps the letter too). An event bus must have an enabled rule whose pattern matches the re-put event
(EventBridge's own ``TestEventPattern``, not a local imitation) and which has a target: the function
when ``--function-arn`` is given (the stack output ``FunctionArn``), any target otherwise. A
``PutEvents`` to a bus without such a rule succeeds and drops the event, which is how an update was
lost before this check.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ops.dlq.aws_errors import AWS_ERRORS, AwsProblem, Subject, explain

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeFilterType

_MAX_RULE_PAGES = 50


class NoRoute(Exception):
    """The copy would not reach the function; the message says why."""


def source_queue_subject(url: str) -> Subject:
    return Subject(
        f"source queue {url}", "--source-queue-url / SOURCE_QUEUE_URL (stack output SourceQueueUrl)"
    )


def bus_subject(bus: str) -> Subject:
    return Subject(f"event bus {bus}", "--event-bus / EVENT_BUS_NAME (stack output EventBusName)")


def check_source_queue(sqs: SQSClient, url: str, dlq_url: str) -> str | None:
    """Raises AwsProblem when the source queue does not exist or cannot be read, or when it and the DLQ
    are the same queue or swapped (the DLQ's redrive policy targets the source queue): a run would then
    read live updates as letters and send them to the DLQ. Returns why letters may not go to the source
    queue when its redrive policy does not target the DLQ (the DLQ may be one that only bus letters
    reach), else None."""
    names: list[QueueAttributeFilterType] = ["QueueArn", "RedrivePolicy"]
    try:
        source = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    except AWS_ERRORS as error:
        raise AwsProblem(explain(error, source_queue_subject(url))) from None
    try:
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=names)["Attributes"]
    except AWS_ERRORS as error:
        raise AwsProblem(explain(error, Subject(f"dead-letter queue {dlq_url}", "--dlq-url"))) from None
    swapped = "check that --dlq-url and --source-queue-url are not swapped"
    if source.get("QueueArn") == dlq.get("QueueArn"):
        raise AwsProblem(f"--source-queue-url and --dlq-url are the same queue {url}: {swapped}")
    if _redrive_target(dlq.get("RedrivePolicy")) == source.get("QueueArn"):
        raise AwsProblem(
            f"the dead-letter queue {dlq_url} dead-letters into the source queue {url} (its redrive policy "
            f"targets it), so it is the source: {swapped}"
        )
    target = _redrive_target(source.get("RedrivePolicy"))
    if target == dlq.get("QueueArn"):
        return None
    where = f"targets {target}" if target else "is not set"
    return (
        f"source queue {url} does not dead-letter into {dlq_url} (its redrive policy {where}): {swapped}, "
        "or pass the source queue that does"
    )


def _redrive_target(redrive_policy: str | None) -> str | None:
    """The ARN a queue's RedrivePolicy moves its failed messages to (None without one)."""
    try:
        policy = json.loads(redrive_policy or "{}")
    except ValueError:
        return None
    target = policy.get("deadLetterTargetArn") if isinstance(policy, dict) else None
    return target if isinstance(target, str) and target else None


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    target_arns: tuple[str, ...]


class BusRoutes:
    """The enabled rules of one bus, loaded once per run; ``rule_for`` answers per event."""

    def __init__(self, events: EventBridgeClient, bus: str, *, function_arn: str | None) -> None:
        self.events = events
        self.bus = bus
        self.function_arn = function_arn
        self._rules: list[Rule] | None = None

    def rules(self) -> list[Rule]:
        """Raises AwsProblem when the bus does not exist or its rules cannot be listed."""
        if self._rules is None:
            try:
                self._rules = [rule for rule in self._list_rules() if self._leads_to_function(rule)]
            except AWS_ERRORS as error:
                raise AwsProblem(explain(error, bus_subject(self.bus))) from None
        return self._rules

    def _list_rules(self) -> list[Rule]:
        rules: list[Rule] = []
        token = ""
        for _ in range(_MAX_RULE_PAGES):
            if token:
                page = self.events.list_rules(EventBusName=self.bus, NextToken=token)
            else:
                page = self.events.list_rules(EventBusName=self.bus)
            for rule in page.get("Rules", []):
                if rule.get("State") == "ENABLED" and rule.get("EventPattern") and rule.get("Name"):
                    targets = self.events.list_targets_by_rule(Rule=rule["Name"], EventBusName=self.bus)
                    arns = tuple(target["Arn"] for target in targets.get("Targets", []))
                    rules.append(Rule(rule["Name"], rule["EventPattern"], arns))
            token = page.get("NextToken", "")
            if not token:
                break
        return rules

    def _leads_to_function(self, rule: Rule) -> bool:
        if self.function_arn is None:
            return bool(rule.target_arns)
        function = self.function_arn
        return any(arn == function or arn.startswith(function + ":") for arn in rule.target_arns)

    def rule_for(self, event: dict[str, Any]) -> str:
        """The name of a rule that delivers ``event`` to the function, or raises NoRoute."""
        rules = self.rules()
        to = f"targeting {self.function_arn}" if self.function_arn else "with a target"
        if not rules:
            raise NoRoute(f"bus {self.bus} has no enabled rule {to}; check --event-bus")
        document = json.dumps(_complete_event(event))
        for rule in rules:
            try:
                answer = self.events.test_event_pattern(EventPattern=rule.pattern, Event=document)
            except AWS_ERRORS as error:
                raise NoRoute(explain(error, bus_subject(self.bus))) from None
            if "Result" not in answer:  # an endpoint without TestEventPattern (a local emulator)
                return f"{rule.name} (pattern not checked: the endpoint has no TestEventPattern)"
            if answer["Result"]:
                return rule.name
        raise NoRoute(
            f"no enabled rule {to} on bus {self.bus} matches the event "
            f"(source {event.get('source')!r}, detail-type {event.get('detail-type')!r}); check --event-bus"
        )


def _complete_event(event: dict[str, Any]) -> dict[str, Any]:
    """TestEventPattern wants every envelope field; a stored event normally has them all."""
    return {
        "id": event.get("id") or str(uuid.uuid4()),
        "account": event.get("account") or "000000000000",
        "source": event.get("source"),
        "time": event.get("time") or "1970-01-01T00:00:00Z",
        "region": event.get("region") or "us-east-1",
        "resources": event.get("resources") or [],
        "detail-type": event.get("detail-type"),
        "detail": event.get("detail"),
    }
