"""The workers' OpenAPI document: a valid OpenAPI 3.1 document, and true of the lookups."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from rules.decisions import explain
from streams.policies import load_policy
from streams.worker import openapi
from streams.worker.web import problem_parts
from tests.builders import replay
from tests.example_run import AS_OF, example_events


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": openapi.document()["components"]},
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    validate(document)
    broken = copy.deepcopy(document)
    del broken["paths"]["/metrics"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


@pytest.mark.parametrize("name", ["default", "predictive", "rfm", "pareto-abc"])
def test_every_lookup_answer_conforms(name: str) -> None:
    policy = load_policy(name)
    run, _ = replay(example_events(), policy, until=AS_OF)
    customer = schema("Customer")
    for state in run.states.values():
        customer.validate(json.loads(json.dumps(explain(state, policy, state.clock))))


def test_problems_are_rfc_9457_documents() -> None:
    status, body, content_type = problem_parts(404, "no customer 'x'")
    assert (status, content_type) == (404, "application/problem+json")
    document = json.loads(body)
    schema("Problem").validate(document)
    assert document == {"type": "about:blank", "title": "Not Found", "status": 404,
                        "detail": "no customer 'x'"}
