"""The ``events/`` samples users pass to ``sam local invoke`` behave as documented."""

from __future__ import annotations

import pytest

from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import AwsResources, Invoker
from tests.samples import CHECKS, load, sample_names


def test_every_event_sample_has_its_check() -> None:
    # Given the files in events/, When their checks are listed, Then each event has one and no check
    # names a file that is gone: a new sample is exercised by every test below
    assert set(CHECKS) == sample_names()


@pytest.mark.parametrize("name", CHECKS)
def test_event_sample(name: str, invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    # Given a sample event, When the handler is invoked with it, Then it does what its check says
    event = load(name)
    CHECKS[name](event, invoke(event), portkey, aws)
