"""Every kind of malformed input gets its specific dead-letter reason (Hypothesis, no Kafka)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings

from models.errors import InvalidEventError
from models.events import parse_event
from rules.admission import admit
from streams.policies import load_policy
from tests.builders import order
from tests.malformed import KINDS, Malformed, corpus

DEFAULT = Path(__file__).resolve().parents[1] / "rules" / "policies" / "default.yaml"
POLICY = load_policy(DEFAULT)
DAY_US = 86_400 * 1_000_000


def rejection(message: Malformed) -> InvalidEventError:
    """The error the worker dead-letters the message with: it parses, then admits."""
    with pytest.raises(InvalidEventError) as caught:
        admit(parse_event(message.value), POLICY, wall=time.time_ns() // 1000,
              max_future=DAY_US, key=message.key)
    return caught.value


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_rejected_with_its_reason(kind: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(KINDS[kind]())
    def check(message: Malformed) -> None:
        error = rejection(message)
        assert error.reason == message.reason, (message.value[:200], str(error))
        if message.field is not None:
            assert message.field in str(error), str(error)

    check()


def test_the_corpus_is_the_same_on_every_draw() -> None:
    first = corpus(per_kind=3)
    assert first == corpus(per_kind=3)
    assert {m.kind for m in first} == set(KINDS) and len(first) == 3 * len(KINDS)


@pytest.mark.parametrize(("currency", "key", "reason"), [
    ("ZZZ", b"someone-else", "unknown_currency"),  # fails every check: the first decides
    ("ZZZ", b"c1", "unknown_currency"),
    ("CNY", b"someone-else", "wrong_key"),
    ("CNY", None, "wrong_key"),
    ("CNY", b"c1", "future_timestamp"),
])
def test_the_first_failed_check_names_the_reason(currency: str, key: bytes | None,
                                                  reason: str) -> None:
    wall = time.time_ns() // 1000
    event = order("c1", wall + 2 * DAY_US, "10.00", currency=currency)  # past the tolerance
    with pytest.raises(InvalidEventError) as caught:
        admit(event, POLICY, wall=wall, max_future=DAY_US, key=key)
    assert caught.value.reason == reason
