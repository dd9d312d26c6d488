"""The gateway's reviewed patch (tools/gateway/patches/, applied by patch-package as npm's postinstall).

The patch file is one line diff of a minified bundle (two 482 KB lines), so these tests are its review:
it changes exactly the two texts of upstream PR #1390 and adds the marker line; ``npm ci`` on a fresh copy
of tools/gateway applies it with no manual step; the installed bundle carries it; a bundle it no longer
fits fails the install. That the patched gateway serves every route is tests/e2e/test_e2e_gateway.py's job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.gateway import PACKAGE_DIR, PACKAGE_NAME, PATCH_MARKER, GatewayUnavailable, PortkeyGateway
from tests.conftest import in_ci

PATCH = PACKAGE_DIR / "patches" / "@portkey-ai+gateway+1.15.2.patch"
BUNDLE = f"node_modules/{PACKAGE_NAME}/build/start-server.js"
# The texts of @portkey-ai/gateway 1.15.2's build/start-server.js that PR #1390 changes, and their fixed
# form: ResponseService.updateHeaders copies the Response before appending, and create() uses the copy.
UPDATE_HEADERS = "updateHeaders(e,t,a){return e.headers.append("
COPIED = (
    "updateHeaders(e,t,a){return(e=new Response(e.body,{status:e.status,statusText:e.statusText,"
    "headers:new Headers(e.headers)})).headers.append("
)
CALLER = "this.updateHeaders(i,n.cacheStatus,o),{response:i,"
USES_THE_COPY = "i=this.updateHeaders(i,n.cacheStatus,o),{response:i,"
NPM_TIMEOUT_S = 300  # a cold npm cache on a busy machine; a warm one takes about 10 s


def patch_sides() -> tuple[list[str], list[str], list[str]]:
    """The patch's one hunk as (context, removed, added) lines; fails unless it is exactly one file."""
    lines = PATCH.read_text("utf-8").splitlines()
    headers = [line for line in lines if line.startswith(("diff --git", "--- ", "+++ "))]
    assert headers == [
        f"diff --git a/{BUNDLE} b/{BUNDLE}",
        f"--- a/{BUNDLE}",
        f"+++ b/{BUNDLE}",
    ]
    hunk = lines[lines.index(f"+++ b/{BUNDLE}") + 1 :]
    assert [line for line in hunk if line.startswith("@@")] == [hunk[0]]
    body = hunk[1:]
    return (
        [line[1:] for line in body if line.startswith(" ")],
        [line[1:] for line in body if line.startswith("-")],
        [line[1:] for line in body if line.startswith("+")],
    )


def original_bundle() -> str:
    """The published 1.15.2 bundle, as the patch's old side (shebang and one line) spells it."""
    context, [removed], _ = patch_sides()
    return "\n".join([*context, removed]) + "\n"


@pytest.fixture(scope="module")
def npm() -> str:
    found = shutil.which("npm")
    if found is None or shutil.which("node") is None:
        if in_ci():
            pytest.fail("node and npm are required in CI", pytrace=False)
        pytest.skip("node or npm is not installed")
    return found


def installed_bundle(package_dir: Path = PACKAGE_DIR) -> str:
    path = package_dir / BUNDLE
    if not path.exists():
        if in_ci():
            pytest.fail(f"{PACKAGE_NAME} is required in CI: run `make gateway`", pytrace=False)
        pytest.skip(f"{PACKAGE_NAME} is not installed: run `make gateway`")
    return path.read_text("utf-8")


def assert_patched(bundle: str) -> None:
    """The fixed texts once each, the unpatched ones nowhere, the marker last (counts: no 482 KB diffs)."""
    counts = {text: bundle.count(text) for text in (COPIED, USES_THE_COPY, UPDATE_HEADERS, f",{CALLER}")}
    assert counts == {COPIED: 1, USES_THE_COPY: 1, UPDATE_HEADERS: 0, f",{CALLER}": 0}
    assert bundle[-len(PATCH_MARKER) - 1 :] == f"{PATCH_MARKER}\n"


def test_the_patch_changes_exactly_the_two_texts_of_pr_1390_and_adds_the_marker() -> None:
    # Given the committed patch file (a reviewer cannot read a 482 KB line diff)
    context, removed, added = patch_sides()

    # When its old side gets the two replacements PR #1390 makes in responseService.ts
    [old] = removed
    expected = old
    for before, after in ((UPDATE_HEADERS, COPIED), (CALLER, USES_THE_COPY)):
        assert (expected.count(before), expected.count(after)) == (1, 0)
        expected = expected.replace(before, after)

    # Then that is its new side, plus the marker line, and nothing else changes
    assert context == ["#!/usr/bin/env node"]
    assert len(added) == 2
    assert added[1] == PATCH_MARKER
    if added[0] != expected:  # not `assert ==`: its diff would print both 482 KB lines
        pytest.fail("the patch changes more than PR #1390's two texts", pytrace=False)


def test_the_installed_gateway_carries_the_patch() -> None:
    # Given the gateway as `make gateway` installed it
    # When its bundle (the one devstack/gateway.py starts) is read
    bundle = installed_bundle()

    # Then it holds the fixed texts once, the unpatched ones nowhere, and ends with the marker
    assert_patched(bundle)


def test_npm_ci_on_a_fresh_copy_installs_the_gateway_and_applies_the_patch(npm: str, tmp_path: Path) -> None:
    # Given a fresh copy of tools/gateway's committed files (no node_modules)
    for name in ("package.json", "package-lock.json", "patches"):
        source = PACKAGE_DIR / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)

    # When `make gateway` runs its one command there
    result = subprocess.run(
        [npm, "ci", "--prefix", str(tmp_path), "--no-audit", "--no-fund", "--prefer-offline"],
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
        env={**os.environ, "CI": "true"},
    )

    # Then it succeeded, patch-package reported the patch, and the installed bundle is the patched one
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{PACKAGE_NAME}@1.15.2 ✔" in result.stdout
    assert_patched(installed_bundle(tmp_path))
    version = json.loads((tmp_path / "node_modules" / PACKAGE_NAME / "package.json").read_text())["version"]
    assert version == "1.15.2"


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(
            lambda bundle: bundle.replace(UPDATE_HEADERS, UPDATE_HEADERS.replace("e.", "r.")), id="edited"
        ),
        pytest.param(lambda bundle: bundle.replace(CALLER, ""), id="without-the-caller"),
    ],
)
def test_a_bundle_the_patch_no_longer_fits_fails_the_install(
    npm: str, tmp_path: Path, changed: Callable[[str], str]
) -> None:
    # Given tools/gateway's package.json and patch over a 1.15.2 bundle that differs from the published one
    patcher = PACKAGE_DIR / "node_modules" / ".bin" / "patch-package"
    if not patcher.exists():
        installed_bundle(tmp_path)  # skips, or fails in CI, saying `make gateway`
    shutil.copy(PACKAGE_DIR / "package.json", tmp_path / "package.json")
    shutil.copytree(PACKAGE_DIR / "patches", tmp_path / "patches")
    package = tmp_path / "node_modules" / PACKAGE_NAME
    (package / "build").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": PACKAGE_NAME, "version": "1.15.2"}))
    bundle = changed(original_bundle())
    (tmp_path / BUNDLE).write_text(bundle, "utf-8")

    # When npm's postinstall runs there
    result = subprocess.run(
        [str(patcher), "--error-on-fail"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )

    # Then the install fails, naming the patch, and the bundle is untouched
    assert result.returncode == 1, result.stdout
    assert "@portkey-ai+gateway+1.15.2.patch" in result.stdout + result.stderr
    assert (tmp_path / BUNDLE).read_text("utf-8") == bundle


def test_the_gateway_refuses_an_unpatched_bundle(tmp_path: Path) -> None:
    # Given the pinned version installed without its patch (npm ci --ignore-scripts)
    shutil.copy(PACKAGE_DIR / "package.json", tmp_path / "package.json")
    package = tmp_path / "node_modules" / PACKAGE_NAME
    (package / "build").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": PACKAGE_NAME, "version": "1.15.2"}))
    (tmp_path / BUNDLE).write_text(original_bundle(), "utf-8")

    # When devstack/gateway.py is asked to start it
    gateway = PortkeyGateway(package_dir=tmp_path)

    # Then it refuses before starting node, and says how to install it properly
    with pytest.raises(GatewayUnavailable, match=r"without its patch.*npm ci --prefix tools/gateway"):
        gateway.start()
    assert not gateway.running
