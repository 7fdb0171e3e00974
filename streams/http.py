"""What the workers' API and the ingress answer alike: RFC 9457 problem documents and the bearer
token check."""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from typing import Any

PROBLEM = "application/problem+json"


def problem(status: int, detail: str, **more: Any) -> bytes:
    """The problem document of an error: `type` about:blank, the status' phrase as `title`."""
    return json.dumps({"type": "about:blank", "title": HTTPStatus(status).phrase,
                       "status": status, "detail": detail, **more}).encode()


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an Authorization header carries the bearer token (compared in constant time)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())
