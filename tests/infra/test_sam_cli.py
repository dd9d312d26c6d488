"""What a user's AWS SAM CLI does with this project: ``sam validate`` (lint) and reading samconfig.toml.

The SAM CLI (pinned in requirements-sam.txt) lives in ``.venv-sam`` (``make sam``): it pins boto3 and
its own lint tools, which clash with the runtime pins. ``sam validate --lint`` runs cfn-lint's
``cfnlint.api.lint`` on the template text and fails on any match, warnings included; the same call
is made here with the cfn-lint pinned in requirements-dev.txt, and the pins must agree.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

from tests.infra.conftest import REPO_ROOT, SAM_VENV, run_sam
from tools.validate_template import load_sam_template

TEMPLATE = REPO_ROOT / "template.yaml"
SAMCONFIG = REPO_ROOT / "samconfig.toml"
LINT_PACKAGES = ("cfn-lint", "aws-sam-translator")

# What samcli.commands.validate.validate._lint does (SAM CLI 1.170).
SAM_LINT = textwrap.dedent(
    """
    import json, sys
    from cfnlint.api import ManualArgs, lint
    path, region = sys.argv[1:3]
    with open(path, encoding="utf-8") as template:
        matches = lint(template.read(), config=ManualArgs(regions=[region]))
    print(json.dumps([str(match) for match in matches]))
    """
)

# SAM CLI's own reading of samconfig.toml's deploy parameters and of parameter_overrides.
SAMCONFIG_PARAMETERS = textwrap.dedent(
    """
    import json, sys
    from samcli.cli.types import CfnParameterOverridesType
    from samcli.lib.config.samconfig import SamConfig
    config = SamConfig(sys.argv[1])
    deploy = config.get_all(["deploy"], "parameters")
    overrides = CfnParameterOverridesType().convert(deploy["parameter_overrides"], None, None)
    print(json.dumps({"region": deploy.get("region"), "overrides": overrides}))
    """
)


def _run_python_json(python: Path | str, script: str, *args: str) -> Any:
    """Run ``script`` with ``python`` (bounded) and decode the JSON it prints."""
    completed = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, timeout=110, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _pins(requirements: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", requirements.read_text(), re.MULTILINE)
    return {name.lower(): version for name, version in found}


def test_sam_validate_passes_with_the_projects_samconfig(sam_cli: Path) -> None:
    """Given samconfig.toml (lint = true, a region), when a user runs `sam validate`, then the
    SAM CLI's cfn-lint finds nothing and it says the template is valid."""
    completed = run_sam(sam_cli, "validate")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "is a valid SAM Template" in completed.stdout


def test_sam_validate_lint_fails_on_a_broken_template(sam_cli: Path, tmp_path: Path) -> None:
    """Given a copy of the template whose alarm names a queue that is not declared, when
    `sam validate --lint` runs on it, then it fails naming the reference (the check is live)."""
    broken = tmp_path / "template.yaml"
    text = TEMPLATE.read_text()
    assert text.count("!GetAtt EventBridgeDeliveryDeadLetterQueue.QueueName") == 1
    broken.write_text(text.replace("EventBridgeDeliveryDeadLetterQueue.QueueName", "Undeclared.QueueName"))
    completed = run_sam(sam_cli, "validate", "--lint", "--region", "us-east-1", "--template", str(broken))
    assert completed.returncode != 0
    assert "Undeclared" in completed.stdout + completed.stderr


def test_cfn_lint_finds_nothing_when_called_as_sam_validate_calls_it() -> None:
    """Given the template, when the pinned cfn-lint lints it the way `sam validate --lint` does
    (any match fails, warnings included), then there is no match at all."""
    assert _run_python_json(sys.executable, SAM_LINT, str(TEMPLATE), "us-east-1") == []


def test_the_lint_tools_are_the_sam_clis_and_installed_as_pinned() -> None:
    """Given requirements-dev.txt and requirements-sam.txt, then cfn-lint and aws-sam-translator
    are pinned to the same versions in both, and this environment runs exactly those."""
    dev, sam = _pins(REPO_ROOT / "requirements-dev.txt"), _pins(REPO_ROOT / "requirements-sam.txt")
    assert "aws-sam-cli" in sam
    for package in LINT_PACKAGES:
        assert dev[package] == sam[package], package
        assert importlib.metadata.version(package) == dev[package], f"{package}: run `make venv`"


def _satisfies(parameter: dict[str, Any], value: str) -> bool:
    """Whether CloudFormation would accept ``value`` for ``parameter`` (the constraints used here)."""
    if "AllowedValues" in parameter and value not in [str(v) for v in parameter["AllowedValues"]]:
        return False
    if "AllowedPattern" in parameter and re.fullmatch(parameter["AllowedPattern"], value) is None:
        return False
    if parameter["Type"] == "Number":
        number = float(value)
        return float(parameter.get("MinValue", number)) <= number <= float(parameter.get("MaxValue", number))
    return len(value) >= int(parameter.get("MinLength", 0))


def test_samconfig_sets_every_parameter_and_only_the_secret_arn_needs_an_edit(sam_cli: Path) -> None:
    """Given samconfig.toml as the SAM CLI reads it, then it names a region and a value for every
    template parameter; each fits its constraints except the placeholder secret ARN, which the
    template rejects (no 6-character suffix), while the same ARN with the suffix is accepted."""
    read = _run_python_json(SAM_VENV / "bin" / "python", SAMCONFIG_PARAMETERS, str(REPO_ROOT))
    assert read["region"] == tomllib.loads(SAMCONFIG.read_text())["default"]["global"]["parameters"]["region"]
    parameters = load_sam_template(TEMPLATE)["Parameters"]
    overrides: dict[str, str] = read["overrides"]
    assert set(overrides) == set(parameters)

    unacceptable = {name for name, value in overrides.items() if not _satisfies(parameters[name], value)}
    assert unacceptable == {"PortkeySecretArn"}
    assert _satisfies(parameters["PortkeySecretArn"], overrides["PortkeySecretArn"] + "-AbC123")
    assert overrides["AlarmTopicArn"] == ""
