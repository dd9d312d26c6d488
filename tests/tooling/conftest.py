"""Fixtures of the DLQ tool's tests (helpers in ``tests.tooling.dlq_support``)."""

from __future__ import annotations

import pytest

from tests.conftest import AwsResources
from tests.tooling.dlq_support import Bus, Dlq, make_bus


@pytest.fixture
def dlq(aws: AwsResources) -> Dlq:
    return Dlq(aws)


@pytest.fixture
def bus(aws: AwsResources) -> Bus:
    return make_bus(aws)
