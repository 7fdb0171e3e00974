"""The OpenAPI 3.1 document of a worker's HTTP API (streams/worker/web.py), served at
/openapi.json and committed as schemas/openapi.json (`tierstream schema`)."""

from __future__ import annotations

from typing import Any

from models.outputs import FORMAT

Doc = dict[str, Any]

_TEXT, _INSTANT = {"type": "string"}, {"type": "string", "format": "date-time"}
_NULLABLE_INSTANT = {"type": ["string", "null"], "format": "date-time"}
_POLICY = {"type": "object", "required": ["name", "version"],
           "properties": {"name": _TEXT, "version": _TEXT}}

SCHEMAS: Doc = {
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail"],
        "description": "RFC 9457 problem details",
        "properties": {"type": {"type": "string", "format": "uri-reference"}, "title": _TEXT,
                       "status": {"type": "integer", "minimum": 400, "maximum": 599},
                       "detail": _TEXT}},
    "Customer": {
        "type": "object", "description": "A customer's tier and why, as of its latest decision",
        "required": ["customer_id", "tier", "since", "eligible_tier", "reason", "downgrade_due",
                     "churn", "churn_rule", "policy", "as_of", "metrics", "next_change_at",
                     "recent"],
        "properties": {
            "customer_id": {"type": "string", "minLength": 1},
            "tier": {"type": ["string", "null"]}, "since": _NULLABLE_INSTANT,
            "eligible_tier": {"type": "string",
                              "description": "the tier whose condition holds now"},
            "reason": {"type": "string", "description": "that tier's condition"},
            "downgrade_due": {**_NULLABLE_INSTANT, "description": "a scheduled downgrade"},
            "churn": {"type": "boolean"}, "churn_rule": {"type": ["string", "null"]},
            "policy": _POLICY, "as_of": _INSTANT,
            "metrics": {"type": "object", "description": "every metric of the policy",
                        "additionalProperties": {"type": ["number", "string", "null"]}},
            "next_change_at": {**_NULLABLE_INSTANT,
                               "description": "when time alone could next change a decision"},
            "recent": {"type": "array", "description": "the latest transitions, newest first",
                       "items": {"type": "object",
                                 "required": ["type", "time", "from_tier", "to_tier", "rule"],
                                 "properties": {"type": _TEXT, "time": _INSTANT,
                                                "from_tier": {"type": ["string", "null"]},
                                                "to_tier": {"type": ["string", "null"]},
                                                "rule": _TEXT}}},
            "followup": {"type": ["object", "null"],
                         "description": "the tier's follow-up plan (policies with `followup`)",
                         "required": ["cadence", "channel", "open", "overdue", "due_at",
                                      "last_contact_at", "owner"],
                         "properties": {"cadence": _TEXT, "channel": _TEXT,
                                        "open": {"type": "boolean"},
                                        "overdue": {"type": "boolean"}, "due_at": _INSTANT,
                                        "last_contact_at": _NULLABLE_INSTANT,
                                        "owner": {"type": ["string", "null"]}}},
            "axes": {"type": "object", "description": "the class on each further axis "
                                                      "(policies with `axes`)",
                     "additionalProperties": {
                         "type": "object",
                         "required": ["class", "since", "eligible_class", "reason",
                                      "downgrade_due"],
                         "properties": {"class": {"type": ["string", "null"]},
                                        "since": _NULLABLE_INSTANT, "eligible_class": _TEXT,
                                        "reason": _TEXT, "downgrade_due": _NULLABLE_INSTANT}}},
        }},
    "BatchGetRequest": {
        "type": "object", "required": ["ids"], "additionalProperties": False,
        "properties": {"ids": {"type": "array", "minItems": 0, "maxItems": 1000,
                               "items": {"type": "string", "minLength": 1}}}},
    "BatchGetResponse": {
        "type": "object", "required": ["customers", "missing"],
        "properties": {
            "customers": {"type": "object", "description": "by customer id, in request order",
                          "additionalProperties": {"$ref": "#/components/schemas/Customer"}},
            "missing": {"type": "array", "items": _TEXT,
                        "description": "the ids of no known customer"}}},
    "TierPage": {
        "type": "object", "required": ["tier", "customers", "next_cursor"],
        "properties": {
            "tier": _TEXT, "customers": {"type": "array", "items": _TEXT},
            "next_cursor": {"type": ["string", "null"],
                            "description": "the cursor of the next page; null after the last"}}},
    "Ready": {
        "type": "object", "required": ["status", "app_id", "partitions", "engine"],
        "properties": {
            "status": {"enum": ["ok", "starting", "topics_unusable"]}, "app_id": _TEXT,
            "partitions": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "engine": {"enum": ["mypyc", "python"]},
            "topics": {"type": "object", "additionalProperties": _TEXT,
                       "description": "each unusable topic and what is wrong with it"}}},
    "Live": {
        "type": "object", "required": ["status", "rebalancing_s"],
        "properties": {"status": {"enum": ["ok", "stuck_rebalancing"]},
                       "rebalancing_s": {"type": "number", "minimum": 0}}},
}


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> Doc:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _problem(description: str) -> Doc:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


_AUTH = {"401": {**_problem("a bearer token is required (TIERSTREAM_API_TOKEN)"),
                 "headers": {"WWW-Authenticate": {"schema": _TEXT,
                                                  "description": "Bearer realm=\"tierstream\""}}}}
_FORWARDED = {"502": _problem("the owning worker could not be reached"),
              "504": _problem("the owning worker did not answer in time")}
_SECURED = [{}, {"bearer": []}]  # the token is required only where one is set


def _ready(operation: str, summary: str) -> Doc:
    return {"get": {"operationId": operation, "summary": summary, "responses": {
        "200": _json("Ready", "ready"),
        "503": _json("Ready", "recovering, rebalancing, or a topic is missing or has the wrong "
                              "partitions")}}}


def document() -> Doc:
    return {
        "openapi": "3.1.0",
        "info": {"title": "tierstream worker", "version": str(FORMAT),
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
                 "description": "Each worker answers for every customer: a lookup on a worker "
                                "that does not own the customer's partition is forwarded to "
                                "the owner. Errors are RFC 9457 problem documents."},
        "servers": [{"url": "http://localhost:6066",
                     "description": "a worker (TIERSTREAM_WEB_PORT)"}],
        "paths": {
            "/customers/{customer_id}": {"get": {
                "operationId": "getCustomer", "summary": "A customer's tier and why",
                "security": _SECURED,
                "parameters": [{"name": "customer_id", "in": "path", "required": True,
                                "description": "one path segment, percent-encoded (/ as %2F)",
                                "schema": {"type": "string", "minLength": 1}}],
                "responses": {"200": _json("Customer", "the customer"), **_AUTH,
                              "404": _problem("no such customer"),
                              "503": _problem("the worker cannot read its table now"),
                              **_FORWARDED}}},
            "/customers:batchGet": {"post": {
                "operationId": "batchGetCustomers", "summary": "Many customers in one request",
                "security": _SECURED,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("BatchGetRequest")}}},
                "responses": {"200": _json("BatchGetResponse", "the customers found"),
                              "400": _problem("the body is not {\"ids\": [...]}"), **_AUTH,
                              "413": _problem("more than 1000 ids"),
                              "503": _problem("the worker cannot read its table now"),
                              **_FORWARDED}}},
            "/tiers/{tier}/customers": {"get": {
                "operationId": "listTierCustomers",
                "summary": "The customers in a tier, a page at a time (from the Redis view)",
                "security": _SECURED,
                "parameters": [
                    {"name": "tier", "in": "path", "required": True, "schema": _TEXT},
                    {"name": "limit", "in": "query", "required": False,
                     "description": "about this many customers (a hint to Redis SSCAN)",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100}},
                    {"name": "cursor", "in": "query", "required": False,
                     "description": "next_cursor of the page before; 0 or none: the first",
                     "schema": {"type": "string", "pattern": "^[0-9]+$"}}],
                "responses": {"200": _json("TierPage", "one page"),
                              "400": _problem("a bad limit or cursor"), **_AUTH,
                              "404": _problem("no such tier in the policy"),
                              "501": _problem("no Redis view (TIERSTREAM_REDIS_URL unset)"),
                              "503": _problem("the Redis view is unavailable")}}},
            "/health/live": {"get": {
                "operationId": "live", "summary": "Liveness: 503 only when stuck rebalancing",
                "responses": {"200": _json("Live", "alive"),
                              "503": _json("Live", "stuck in a rebalance: restart it")}}},
            "/health/ready": _ready("ready", "Readiness: 200 once the table is recovered"),
            "/health": _ready("health", "The same as /health/ready"),
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics",
                "responses": {"200": {"description": "the text exposition format",
                                      "content": {"text/plain": {"schema": _TEXT}}}}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}}}},
        },
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "TIERSTREAM_API_TOKEN, when set"}}},
    }
