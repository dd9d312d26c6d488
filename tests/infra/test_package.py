"""``make package`` (tools/package.py): a function for Lambda's python3.13 runtime, built on any host.

Every compiled module in the package must be built for CPython 3.13 and the target architecture
(file name tag and ELF header), every wheel must be pure Python or tagged for that runtime, the zip
must hold exactly the package, and the SAM CLI must deploy that zip unchanged.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.artifact import LambdaPlatform
from tests.infra.conftest import run_sam
from tools.package import IncompletePackage, Package, build_package, check_package, zip_directory
from tools.validate_template import load_sam_template

REPO_ROOT = Path(__file__).resolve().parents[2]
ELF_MAGIC = b"\x7fELF"
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}  # e_machine: EM_X86_64, EM_AARCH64
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")

# One worker runs the module under xdist (`make pytest`): each architecture's package is built once.
pytestmark = pytest.mark.xdist_group("package")


@pytest.fixture(scope="module", params=["x86_64", "arm64"])
def lambda_package(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Package:
    """The package as `make package [ARCH=arm64]` builds it, in a project directory of its own."""
    project = tmp_path_factory.mktemp(f"project-{request.param}")
    return build_package(request.param, out_dir=project / "build", deploy_dir=project / "build" / "deploy")


def compiled_modules(directory: Path) -> list[Path]:
    return sorted(
        path for path in directory.rglob("*") if path.is_file() and path.name.endswith(COMPILED_SUFFIXES)
    )


def elf_machine(path: Path) -> tuple[bytes, int, int]:
    """(magic, ELF class: 2 = 64-bit, e_machine) of a little-endian ELF file."""
    header = path.read_bytes()[:20]
    return header[:4], header[4], int.from_bytes(header[18:20], "little")


def wheel_tags(directory: Path) -> Iterator[tuple[str, str]]:
    """(distribution, Tag) for every installed wheel's WHEEL file."""
    for wheel in sorted(directory.glob("*.dist-info/WHEEL")):
        for tag in re.findall(r"^Tag: (\S+)$", wheel.read_text(), re.MULTILINE):
            yield wheel.parent.name, tag


def test_every_compiled_module_is_for_the_runtimes_cpython_and_the_target_architecture(
    lambda_package: Package,
) -> None:
    # Given the package built on this host (whatever its Python and machine) for the Lambda runtime
    target: LambdaPlatform = lambda_package.lambda_platform
    modules = compiled_modules(lambda_package.directory)

    # Then there are compiled modules (pydantic-core), and each is a Linux extension for CPython
    # 3.13 (or the stable ABI) on the target architecture, by name and by its ELF header
    assert any(path.name.startswith("_pydantic_core.") for path in modules), modules
    name_tag = re.compile(rf"\.(cpython-{target.abi_tag[2:]}-{target.machine}-linux-gnu|abi3)\.so$")
    for path in modules:
        relative = path.relative_to(lambda_package.directory)
        assert name_tag.search(path.name), relative
        assert elf_machine(path) == (ELF_MAGIC, 2, ELF_MACHINES[target.machine]), relative


def test_every_wheel_is_pure_python_or_built_for_the_runtime(lambda_package: Package) -> None:
    target = lambda_package.lambda_platform
    platform_tag = re.compile(rf"^{target.abi_tag}-({target.abi_tag}|abi3)-manylinux\w*_{target.machine}$")
    tags = list(wheel_tags(lambda_package.directory))
    assert tags
    for distribution, tag in tags:
        assert tag.endswith("-none-any") or platform_tag.match(tag), (distribution, tag)
    assert any(platform_tag.match(tag) for _, tag in tags)


def test_the_package_holds_the_function_and_no_bytecode_or_requirements(lambda_package: Package) -> None:
    directory = lambda_package.directory
    assert (directory / "handler.py").read_bytes() == (REPO_ROOT / "src" / "handler.py").read_bytes()
    for source in (REPO_ROOT / "src" / "thread_updater").rglob("*.py"):
        relative = source.relative_to(REPO_ROOT / "src")
        assert (directory / relative).read_bytes() == source.read_bytes(), relative
    assert not (directory / "requirements.txt").exists()
    assert not [path for path in directory.rglob("*") if path.suffix == ".pyc" or path.name == "__pycache__"]


def test_the_zip_is_the_package_readable_by_lambda_and_reproducible(
    lambda_package: Package, tmp_path: Path
) -> None:
    directory = lambda_package.directory
    files = sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file())
    with zipfile.ZipFile(lambda_package.zip_path) as archive:
        entries = archive.infolist()
        assert sorted(entry.filename for entry in entries) == files
        assert archive.testzip() is None
        for entry in entries:
            mode = entry.external_attr >> 16
            assert mode & 0o444 == 0o444, entry.filename  # readable by the runtime's user
        assert sum(entry.file_size for entry in entries) < LAMBDA_UNZIPPED_LIMIT_BYTES
    again = zip_directory(directory, tmp_path / "again.zip")
    assert again.read_bytes() == lambda_package.zip_path.read_bytes()


def test_the_deploy_template_deploys_the_zip_for_the_target_architecture(lambda_package: Package) -> None:
    # Given the deploy template (build/deploy/template.yaml, what samconfig.toml deploys)
    built = load_sam_template(lambda_package.template)
    source = load_sam_template(REPO_ROOT / "template.yaml")

    # Then it is template.yaml with CodeUri on the zip (relative to the template) and the target
    # architecture, and nothing else changed
    function: dict[str, Any] = built["Resources"]["ModifyThreadFunction"]["Properties"]
    code_uri = lambda_package.template.parent / function["CodeUri"]
    assert code_uri.resolve() == lambda_package.zip_path.resolve()
    assert built["Globals"]["Function"]["Architectures"] == [lambda_package.lambda_platform.architecture]
    function["CodeUri"] = source["Resources"]["ModifyThreadFunction"]["Properties"]["CodeUri"]
    built["Globals"]["Function"]["Architectures"] = source["Globals"]["Function"]["Architectures"]
    assert built == source


def test_the_deploy_template_runs_the_zip_on_the_python_it_was_built_for(lambda_package: Package) -> None:
    # Given the package as `make package` builds it (tools/package.py's target) and the template it
    # deploys, written from template.yaml
    built = load_sam_template(lambda_package.template)
    function: dict[str, Any] = built["Resources"]["ModifyThreadFunction"]["Properties"]

    # When the function's Runtime is read (its own, else the Globals')
    runtime = function.get("Runtime", built["Globals"]["Function"].get("Runtime"))

    # Then it is the CPython the zip's compiled modules were built for: template.yaml's Runtime and
    # the packager's target cannot drift apart (pydantic-core for another CPython does not import)
    assert runtime == f"python{lambda_package.lambda_platform.python_version}"


def test_sam_package_uploads_the_zip_unchanged(
    lambda_package: Package, sam_cli: Path, moto_endpoint: str
) -> None:
    # Given the package's project directory (no samconfig) and an S3 bucket (moto)
    project = lambda_package.template.parent.parent.parent
    bucket = f"artifacts-{lambda_package.lambda_platform.architecture.replace('_', '-')}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    output = project / "packaged.yaml"

    # When the SAM CLI packages it, as `sam deploy` does first (samconfig.toml's template_file)
    completed = run_sam(
        sam_cli,
        "package",
        "--template-file",
        str(lambda_package.template),
        "--s3-bucket",
        bucket,
        "--region",
        "us-east-1",
        "--output-template-file",
        str(output),
        cwd=project,
        AWS_ENDPOINT_URL=moto_endpoint,
    )

    # Then the function's code is the S3 object it uploaded, byte for byte our zip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    packaged = load_sam_template(output)
    code_uri = packaged["Resources"]["ModifyThreadFunction"]["Properties"]["CodeUri"]
    assert code_uri.startswith(f"s3://{bucket}/")
    key = code_uri.removeprefix(f"s3://{bucket}/")
    uploaded = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert uploaded == lambda_package.zip_path.read_bytes()


def test_a_package_missing_a_dependency_is_refused_and_leaves_nothing_to_deploy(tmp_path: Path) -> None:
    # Given a deploy template left by an earlier build
    deploy_dir = tmp_path / "build" / "deploy"
    deploy_dir.mkdir(parents=True)
    (deploy_dir / "template.yaml").write_text("stale")

    # When a package is built without urllib3 (as if src/requirements.txt had lost it)
    with pytest.raises(IncompletePackage) as refused:
        build_package(out_dir=tmp_path / "build", deploy_dir=deploy_dir, omit=["urllib3"])

    # Then it is refused naming what is missing, and no deploy template is left for `sam deploy`
    assert any(problem.startswith("urllib3 ") for problem in refused.value.problems), refused.value.problems
    assert not (deploy_dir / "template.yaml").exists()


def test_a_package_for_another_architecture_is_refused(lambda_package: Package) -> None:
    # Given a package, When it is checked for the other architecture, Then its binaries are named
    other = "arm64" if lambda_package.lambda_platform.architecture == "x86_64" else "x86_64"
    problems = check_package(lambda_package.zip_path, LambdaPlatform(architecture=other))
    assert any("pydantic_core" in problem for problem in problems), problems
    assert check_package(lambda_package.zip_path, lambda_package.lambda_platform) == []
