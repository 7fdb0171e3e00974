"""Parses policy YAML into a CompiledPolicy, with errors that name file, line and field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from pydantic import ValidationError

from models.errors import ModelFitError, PolicyError
from models.policy import Policy, PolicyShapeError
from rules.compiled import CompiledPolicy, field_path
from rules.lifetime_value import Model

Location = tuple[str | int, ...]
ModelReader = Callable[[str], Model]


def parse_policy(text: str, file: str = "<policy>",
                 read_model: ModelReader | None = None) -> CompiledPolicy:
    """Validate and compile the YAML text of a policy; `file` is only used in error messages.

    `read_model` turns the policy's `model:` value into a fitted model (the loader reads the
    file; ModelFitError says why it cannot), so this stays free of I/O.
    """
    data, lines = _read_yaml(text, file)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        cause = first.get("ctx", {}).get("error")
        location = cause.location if isinstance(cause, PolicyShapeError) else tuple(first["loc"])
        raise PolicyError(first["msg"].removeprefix("Value error, "), file=file,
                          line=_line_of(location, lines), field=field_path(location)) from None
    model = _model(policy, read_model, file, _line_of(("model",), lines))
    return CompiledPolicy(policy, lambda location: _line_of(location, lines), file, model)


def _model(policy: Policy, read_model: ModelReader | None, file: str,
           line: int | None) -> Model | None:
    if policy.model is None:
        return None
    if read_model is None:
        raise PolicyError("the policy names a model file, but this loader reads no files; load "
                          "it with streams.policies.load_policy", file=file, line=line,
                          field="model")
    try:
        return read_model(policy.model)
    except ModelFitError as error:
        raise PolicyError(f"cannot use model {policy.model!r}: {error}", file=file, line=line,
                          field="model") from None


def _read_yaml(text: str, file: str) -> tuple[Any, dict[Location, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the policy file is empty", file=file)
        lines: dict[Location, int] = {}
        _index(node, (), lines, file)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise PolicyError(f"not valid YAML: {error.problem or error.context}", file=file,
                          line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()


def _index(node: yaml.Node, location: Location, lines: dict[Location, int], file: str) -> None:
    lines[location] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                raise PolicyError(f"key {key.value!r} appears twice", file=file,
                                  line=key.start_mark.line + 1, field=field_path(location))
            seen.add(key.value)
            _index(value, (*location, key.value), lines, file)
            lines[(*location, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*location, i), lines, file)


def _line_of(location: Location, lines: dict[Location, int]) -> int | None:
    for end in range(len(location), -1, -1):
        if location[:end] in lines:
            return lines[location[:end]]
    return None
