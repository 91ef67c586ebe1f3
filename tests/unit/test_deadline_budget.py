"""deadline.Budget: one total deadline over several requests (the Hub resolve), on a local server that
drips bytes (tests/unit/test_hardening_verify.drip_server). Under a budget a deadline is final
(DeadlineExceeded, which is no httpx error, so a retrying client such as huggingface_hub stops)."""

from __future__ import annotations

import time

import httpx
import pytest
from test_hardening_verify import BODY_DRIP, drip_server

from residency.deadline import Budget, DeadlineExceeded, deadline_transport


def _get(url: str, budget: Budget, timeout: float) -> None:
    with httpx.Client(timeout=timeout, transport=deadline_transport(httpx, budget)) as c:
        c.get(url).read()


@pytest.mark.timeout(30)
def test_the_request_timeout_binds_when_the_budget_is_larger():
    with drip_server(BODY_DRIP, drip=b" ") as url:
        with pytest.raises(DeadlineExceeded, match=r"request deadline of 0\.5s"):
            _get(url, Budget(20), 0.5)


@pytest.mark.timeout(30)
def test_the_budget_binds_when_it_ends_first_and_then_refuses_at_once():
    with drip_server(BODY_DRIP, drip=b" ") as url:
        b = Budget(0.6)
        with pytest.raises(DeadlineExceeded, match=r"total deadline of 0\.6s"):
            _get(url, b, 5.0)
        assert b.remaining() <= 0
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"total deadline of 0\.6s"):
            _get(url, b, 5.0)
        assert time.monotonic() - t0 < 0.5  # no connection is even tried


def test_deadline_exceeded_is_not_an_httpx_error():
    assert not issubclass(DeadlineExceeded, httpx.HTTPError)
