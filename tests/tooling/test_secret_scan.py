"""The suite-wide credential scan in conftest.py: a test that leaks the secret fails, whatever it asserts."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_test_that_prints_or_logs_a_credential_fails_although_its_assertions_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the project's conftest and three tests that pass on their own: one prints the API key,
    # one logs the provider auth at DEBUG, one prints nothing secret
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_leaks="""
        import logging

        from tests.conftest import API_KEY, PROVIDER_AUTH


        def test_prints_the_key():
            print("calling with", API_KEY)


        def test_logs_the_provider_auth_at_debug():
            logging.getLogger("anything").debug("auth %s", PROVIDER_AUTH)


        def test_clean():
            print("nothing to see")
        """
    )

    # When that suite runs in its own interpreter (its log records must not reach this test's capture)
    # and its report does not repeat the captured output (which would leak into ours)
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'src'}")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--show-capture=no", timeout=60)

    # Then the two leaking tests fail, naming what leaked but not its value
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*credential values in the captured output of call: API_KEY*",
            "*credential values in the captured output of call: PROVIDER_AUTH*",
        ],
        consecutive=False,
    )
