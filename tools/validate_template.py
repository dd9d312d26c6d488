#!/usr/bin/env python3
"""Offline validation of the SAM template: what ``sam validate --lint`` does, and more.

Steps:

1. run cfn-lint on the SAM template itself (what ``sam validate --lint`` does);
2. translate the SAM template to plain CloudFormation with aws-sam-translator, the way
   ``sam validate`` does it (local ``CodeUri`` values replaced with a dummy S3 URI, no AWS
   calls: the managed-policy loader returns an empty map and the region comes from
   ``AWS_DEFAULT_REGION``, default ``us-east-1``);
3. run cfn-lint on the translated template, which also checks the resources SAM generates
   (execution role, event source mapping, EventBridge rule, event-invoke config, ...).

A SAM resource's ``Metadata: cfn-lint: config`` directives (``ignore_checks``) also apply to the
resources SAM generates from it (its execution role, ...), which the translation gives no Metadata.

cfn-lint runs once, in a subprocess, over both files (it is the slow part) so that its SAM
transform, which relaxes some of the translator's checks process-wide, cannot affect step 2.

Error-level findings, or a translation failure, exit with status 1; warnings and
informational findings are printed but do not fail the run.

Usage::

    .venv/bin/python tools/validate_template.py [--template template.yaml] [--output translated.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_REGION = "us-east-1"
# The value `sam validate` substitutes for local CodeUri/ImageUri paths.
DUMMY_S3_URI = "s3://bucket/value"


@dataclass(frozen=True)
class Finding:
    """One problem found by a validation step."""

    step: str
    level: str  # "Error", "Warning" or "Informational"
    rule: str
    message: str
    location: str

    def __str__(self) -> str:
        return f"  [{self.level}] {self.rule} {self.message}\n      at {self.location}"


@dataclass
class ValidationResult:
    """Everything the validation found, plus the translated template when translation worked."""

    findings: list[Finding] = field(default_factory=list)
    translated: dict[str, Any] | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "Error"]

    @property
    def ok(self) -> bool:
        return self.translated is not None and not self.errors


class _EmptyManagedPolicyLoader:
    """Offline stand-in for samtranslator's ManagedPolicyLoader (which calls IAM)."""

    def load(self) -> dict[str, str]:
        return {}


def load_sam_template(path: Path) -> dict[str, Any]:
    """Parse a SAM template (YAML with CloudFormation short tags, or JSON) into a dict.

    Short tags become their long form (``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``), as
    in SAM CLI. A private loader class keeps yaml.SafeLoader itself free of the extra tags.
    """
    import yaml  # type: ignore[import-untyped,unused-ignore]
    from samtranslator.yaml_helper import intrinsics_multi_constructor

    loader: Any = type("CloudFormationLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", intrinsics_multi_constructor)
    parsed = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(parsed, dict):
        raise ValueError(f"{path}: a template must be a mapping, got {type(parsed).__name__}")
    return parsed


def _replace_local_code_uris(template: dict[str, Any]) -> None:
    """Point local CodeUri/ImageUri paths at a dummy S3 URI, as `sam validate` does."""
    function_globals = template.get("Globals", {}).get("Function", {})
    sections: list[dict[str, Any]] = [function_globals] if isinstance(function_globals, dict) else []
    for resource in template.get("Resources", {}).values():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
            properties = resource.get("Properties")
            if isinstance(properties, dict):
                sections.append(properties)
    for properties in sections:
        key = "ImageUri" if properties.get("PackageType") == "Image" else "CodeUri"
        value = properties.get(key)
        if isinstance(value, str) and not value.startswith("s3://"):
            properties[key] = DUMMY_S3_URI


def translate(template: dict[str, Any], parameter_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Translate a SAM template dict to CloudFormation offline.

    Raises samtranslator's InvalidDocumentException (with ``causes``) for invalid templates.
    """
    os.environ.setdefault("AWS_DEFAULT_REGION", DEFAULT_REGION)
    from samtranslator.translator.transform import transform

    sam_template = copy.deepcopy(template)
    _replace_local_code_uris(sam_template)
    translated = transform(sam_template, dict(parameter_values or {}), _EmptyManagedPolicyLoader())
    if not isinstance(translated, dict):
        raise TypeError(f"the SAM translator returned {type(translated).__name__}, not a template")
    _carry_cfn_lint_directives(template, translated)
    return translated


def _carry_cfn_lint_directives(source: dict[str, Any], translated: dict[str, Any]) -> None:
    """Give the resources SAM generates from a resource that resource's cfn-lint directives.

    SAM copies a function's ``Metadata`` onto the function and its event-invoke config only; its
    execution role, event source mappings and permissions (logical ids starting with the function's)
    get none, so ``Metadata: cfn-lint: config`` written on the SAM resource would not reach the
    translated role cfn-lint checks. Resources declared in the template itself are left alone.
    """
    declared = source.get("Resources", {})
    resources = translated.get("Resources", {})
    for logical_id, resource in declared.items():
        config = resource.get("Metadata", {}).get("cfn-lint") if isinstance(resource, dict) else None
        if not isinstance(config, dict):
            continue
        for generated_id, generated in resources.items():
            if generated_id.startswith(logical_id) and generated_id not in declared:
                metadata = generated.setdefault("Metadata", {})
                metadata.setdefault("cfn-lint", copy.deepcopy(config))


def _translation_findings(exc: Exception) -> list[Finding]:
    causes: Sequence[Any] = getattr(exc, "causes", None) or [exc]
    return [
        Finding(
            step="translate",
            level="Error",
            rule="SAM",
            message=str(getattr(cause, "message", None) or cause),
            location="(SAM translator)",
        )
        for cause in causes
    ]


def run_cfn_lint(files: dict[str, Path], display_names: dict[str, str] | None = None) -> list[Finding]:
    """Run cfn-lint once over ``files`` (step name -> path) and return its findings.

    ``display_names`` (step name -> text) replaces file names in finding locations.
    """
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    if cfn_lint.exists():
        command = [str(cfn_lint)]
    else:
        command = [sys.executable, "-c", "import sys, cfnlint.runner; sys.exit(cfnlint.runner.main())"]
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION)}
    completed = subprocess.run(  # noqa: S603 - fixed command line, our own files
        [
            *command,
            "--format",
            "json",
            "--regions",
            env["AWS_DEFAULT_REGION"],
            "--",
            *map(str, files.values()),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    try:
        matches = json.loads(completed.stdout or "[]")
    except json.JSONDecodeError:
        matches = None
    if not isinstance(matches, list):
        # Exit status 1 (or unparseable output) means cfn-lint itself failed.
        detail = (completed.stderr or completed.stdout).strip()
        message = f"cfn-lint failed (exit {completed.returncode}): {detail}"
        return [Finding("cfn-lint", "Error", "cfn-lint", message, "")]

    steps_by_file = {str(path): step for step, path in files.items()}
    names = display_names or {}
    findings: list[Finding] = []
    for match in matches:
        filename = str(match.get("Filename", ""))
        location = match.get("Location", {})
        line = location.get("Start", {}).get("LineNumber", "?")
        path = "/".join(str(part) for part in location.get("Path") or [])
        step = steps_by_file.get(filename, "cfn-lint")
        filename = names.get(step, filename)
        findings.append(
            Finding(
                step=step,
                level=str(match.get("Level", "Error")),
                rule=str(match.get("Rule", {}).get("Id", "?")),
                message=str(match.get("Message", "")),
                location=f"{filename}:{line} {path}".rstrip(),
            )
        )
    return findings


def validate(template_path: Path = DEFAULT_TEMPLATE, output: Path | None = None) -> ValidationResult:
    """Translate and lint ``template_path``; see the module docstring."""
    result = ValidationResult()
    try:
        result.translated = translate(load_sam_template(template_path))
    except Exception as exc:  # every translation problem is a finding
        result.findings.extend(_translation_findings(exc))

    with tempfile.TemporaryDirectory(prefix="validate-template-") as tmp:
        files = {"cfn-lint (SAM template)": template_path.resolve()}
        if result.translated is not None:
            translated_path = output.resolve() if output else Path(tmp) / "translated.json"
            translated_path.write_text(json.dumps(result.translated, indent=2, sort_keys=True) + "\n")
            files["cfn-lint (translated template)"] = translated_path
        display = {} if output else {"cfn-lint (translated template)": "<translated>"}
        result.findings.extend(run_cfn_lint(files, display))
    return result


def _report(result: ValidationResult, template_path: Path, output: Path | None) -> None:
    region = os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION)
    steps = ["cfn-lint (SAM template)", "translate", "cfn-lint (translated template)"]
    descriptions = {
        "translate": f"SAM translation of {template_path} (aws-sam-translator, offline, {region})",
        "cfn-lint (SAM template)": f"cfn-lint on {template_path}",
        "cfn-lint (translated template)": "cfn-lint on the translated CloudFormation template"
        + (f" ({output})" if output else ""),
    }
    for step in [*steps, "cfn-lint"]:
        findings = [f for f in result.findings if f.step == step]
        if step == "cfn-lint" and not findings:
            continue
        skipped = step == "cfn-lint (translated template)" and result.translated is None
        if skipped:
            status = "SKIPPED (translation failed)"
        elif not findings:
            status = "ok"
        else:
            counts = {level: sum(f.level == level for f in findings) for level in ("Error", "Warning")}
            status = f"{counts['Error']} error(s), {counts['Warning']} warning(s), {len(findings)} finding(s)"
        print(f"- {descriptions.get(step, step)}: {status}")
        for finding in findings:
            print(finding)
    if result.translated is not None:
        resources = result.translated.get("Resources", {})
        kinds = sorted({str(r.get("Type")) for r in resources.values() if isinstance(r, dict)})
        print(f"Translated template: {len(resources)} resources ({', '.join(kinds)})")
    print("VALID" if result.ok else "INVALID")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template to validate")
    parser.add_argument("--output", type=Path, help="also write the translated template (JSON) here")
    args = parser.parse_args(argv)
    template_path: Path = args.template
    output: Path | None = args.output
    if not template_path.is_file():
        print(f"no such template: {template_path}", file=sys.stderr)
        return 2
    result = validate(template_path, output)
    _report(result, template_path, output)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
