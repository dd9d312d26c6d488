"""The gateway's reviewed patch (tools/gateway/patches/apply.mjs), run with node as npm's postinstall runs it.

On a small stand-in bundle holding the two texts the patch replaces; that the patched real bundle serves
every route is tests/e2e/test_e2e_gateway.py's job (unpatched, each of those tests fails).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.gateway import PACKAGE_DIR, PATCH_MARKER, GatewayUnavailable, PortkeyGateway
from tests.conftest import in_ci

APPLY = PACKAGE_DIR / "patches" / "apply.mjs"
# The texts of @portkey-ai/gateway 1.15.2's build/start-server.js the patch replaces, and their fixed form.
UPDATE_HEADERS = "updateHeaders(e,t,a){return e.headers.append("
CALLER = "this.updateHeaders(i,n.cacheStatus,o),{response:i,"
COPIED = (
    "updateHeaders(e,t,a){return(e=new Response(e.body,{status:e.status,statusText:e.statusText,"
    "headers:new Headers(e.headers)})).headers.append("
)
USES_THE_COPY = "i=this.updateHeaders(i,n.cacheStatus,o),{response:i,"
BUNDLE = f'#!/usr/bin/env node\nclass ru{{async create(e){{return {CALLER}x}}{UPDATE_HEADERS}"a"),e}}}}\n'


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        if in_ci():
            pytest.fail("node is required in CI", pytrace=False)
        pytest.skip("node is not installed")
    return found


def fake_install(modules: Path, *, version: str = "1.15.2", bundle: str = BUNDLE) -> Path:
    package = modules / "@portkey-ai" / "gateway"
    (package / "build").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "@portkey-ai/gateway", "version": version}))
    entry = package / "build" / "start-server.js"
    entry.write_text(bundle)
    return entry


def apply(node: str, modules: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(APPLY), str(modules)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_patch_copies_the_response_and_its_caller_uses_the_copy(node: str, tmp_path: Path) -> None:
    # Given an installed 1.15.2 bundle with the code of issue #1389
    entry = fake_install(tmp_path / "node_modules")

    # When npm's postinstall runs the patch
    result = apply(node, tmp_path / "node_modules")

    # Then both texts are replaced once, the marker ends the file, and it says what it applied
    assert result.returncode == 0, result.stderr
    patched = entry.read_text()
    assert (patched.count(COPIED), patched.count(USES_THE_COPY)) == (1, 1)
    assert UPDATE_HEADERS not in patched
    assert patched.endswith(f"{PATCH_MARKER}\n")
    assert "gateway patch applied: gateway PR #1390" in result.stdout


def test_a_second_run_changes_nothing(node: str, tmp_path: Path) -> None:
    # Given a bundle the patch was applied to
    entry = fake_install(tmp_path / "node_modules")
    assert apply(node, tmp_path / "node_modules").returncode == 0
    once = entry.read_bytes()

    # When it runs again (npm install after npm ci)
    result = apply(node, tmp_path / "node_modules")

    # Then the bundle is byte for byte the same and the run says so
    assert result.returncode == 0, result.stderr
    assert entry.read_bytes() == once
    assert "already applied" in result.stdout


def test_another_gateway_version_fails_the_install(node: str, tmp_path: Path) -> None:
    # Given the pin moved to a release the patch was not reviewed for
    entry = fake_install(tmp_path / "node_modules", version="1.16.0")

    # When the patch runs
    result = apply(node, tmp_path / "node_modules")

    # Then the install fails, naming both versions, and the bundle is untouched
    assert result.returncode == 1
    assert "1.16.0 is installed" in result.stderr
    assert "is for 1.15.2" in result.stderr
    assert entry.read_text() == BUNDLE


@pytest.mark.parametrize("bundle", [BUNDLE.replace(CALLER, ""), BUNDLE + UPDATE_HEADERS])
def test_a_bundle_the_patch_no_longer_fits_fails_the_install(node: str, tmp_path: Path, bundle: str) -> None:
    # Given a bundle holding one of the replaced texts not at all, or twice
    entry = fake_install(tmp_path / "node_modules", bundle=bundle)

    # When the patch runs
    result = apply(node, tmp_path / "node_modules")

    # Then the install fails and says which patch no longer fits; nothing was written
    assert result.returncode == 1
    assert "no longer fits" in result.stderr
    assert entry.read_text() == bundle


def test_the_gateway_refuses_an_unpatched_bundle(node: str, tmp_path: Path) -> None:
    # Given the pinned version installed without its patch (npm ci --ignore-scripts)
    shutil.copy(PACKAGE_DIR / "package.json", tmp_path / "package.json")
    fake_install(tmp_path / "node_modules")

    # When devstack/gateway.py is asked to start it
    gateway = PortkeyGateway(package_dir=tmp_path)

    # Then it refuses before starting node, and says how to install it properly
    with pytest.raises(GatewayUnavailable, match=r"without its patch.*npm ci --prefix tools/gateway"):
        gateway.start()
    assert not gateway.running
