"""Environment validation: clear configuration errors naming the variable."""

from __future__ import annotations

import pytest

from thread_updater.errors import ConfigurationError
from thread_updater.settings import load_settings

BASE = {"PORTKEY_SECRET_ID": "portkey", "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/1/dlq"}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.base_url == "https://api.portkey.ai/v1"
    assert (settings.max_attempts, settings.max_concurrency, settings.secret_max_age_s) == (3, 16, 300)
    assert settings.max_rps is None


@pytest.mark.parametrize(("value", "cap"), [("0", None), ("12.5", 12.5), ("100", 100.0)])
def test_portkey_max_rps_is_a_cap_or_nothing(value: str, cap: float | None) -> None:
    # The template passes 0 when no cap is set
    assert load_settings({**BASE, "PORTKEY_MAX_RPS": value}).max_rps == cap


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8787/v1",
        "http://localhost:8787/v1/",
        "http://[::1]:1/v1",
        "https://gw.example.com/v1",
    ],
)
def test_https_or_loopback_base_urls_are_accepted(url: str) -> None:
    assert load_settings({**BASE, "PORTKEY_BASE_URL": url}).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"PORTKEY_SECRET_ID": ""}, "PORTKEY_SECRET_ID"),
        ({"DLQ_URL": "not a url"}, "DLQ_URL"),
        ({"PORTKEY_BASE_URL": "http://gateway.internal:8787/v1"}, "PORTKEY_BASE_URL"),
        ({"PORTKEY_BASE_URL": "ftp://x/v1"}, "PORTKEY_BASE_URL"),
        ({"PORTKEY_BASE_URL": "https://x/v1?debug=1"}, "PORTKEY_BASE_URL"),
        ({"MAX_ATTEMPTS": "three"}, "MAX_ATTEMPTS"),
        ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS"),
        ({"MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY"),
        ({"PORTKEY_MAX_RPS": "-1"}, "PORTKEY_MAX_RPS"),
        ({"PORTKEY_MAX_RPS": "fast"}, "PORTKEY_MAX_RPS"),
    ],
)
def test_malformed_variables_are_named(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings({**BASE, **overrides})


@pytest.mark.parametrize("missing", ["PORTKEY_SECRET_ID", "DLQ_URL"])
def test_missing_required_variables_are_named(missing: str) -> None:
    environ = {name: value for name, value in BASE.items() if name != missing}
    with pytest.raises(ConfigurationError, match=f"{missing}: Field required"):
        load_settings(environ)
