"""Parses policy YAML into a CompiledPolicy, with errors that name file, line and field.

A policy is a few KiB of YAML. Anything far larger is refused before it can cost much memory or
time: text over MAX_POLICY_SIZE characters (the loader refuses a file over as many bytes before
reading it), YAML nested deeper than MAX_POLICY_DEPTH, and a document larger than
MAX_POLICY_VALUES values or MAX_POLICY_SIZE characters once its aliases are expanded (a
"billion laughs" file of a few hundred bytes expands to billions of values). Aliases within
these bounds are allowed.
"""

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

MAX_POLICY_SIZE = 1024 * 1024  # bytes of a policy file, characters of a policy text: 1 MiB
MAX_POLICY_VALUES = 10_000     # YAML values (scalars, lists, mappings), aliases expanded
MAX_POLICY_DEPTH = 50          # lists and mappings inside each other


def parse_policy(text: str, file: str = "<policy>",
                 read_model: ModelReader | None = None) -> CompiledPolicy:
    """Validate and compile the YAML text of a policy; `file` is only used in error messages.

    `read_model` turns the policy's `model:` value into a fitted model (the loader reads the
    file; ModelFitError says why it cannot), so this stays free of I/O.
    """
    if len(text) > MAX_POLICY_SIZE:
        raise PolicyError(f"the policy is {len(text):,} characters, more than the "
                          f"{MAX_POLICY_SIZE:,} allowed", file=file)
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


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that counts, while it composes, the values of the document with every alias
    expanded, and stops at the first value past a bound, naming its line (an alias's own line)."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file, self.depth, self.values, self.characters = file, 0, 0, 0
        self.sizes: dict[int, tuple[int, int]] = {}  # id of an anchored node: (values, chars)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:  # an undefined one is the composer's error
                if id(anchored) not in self.sizes:
                    raise PolicyError(f"alias *{event.anchor} is inside the value it refers to "
                                      "(a recursive structure)", file=self.file, line=line)
                self._count(*self.sizes[id(anchored)], line, f"alias *{event.anchor}")
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_POLICY_DEPTH:
            raise PolicyError(f"YAML nested more than {MAX_POLICY_DEPTH} levels deep",
                              file=self.file, line=line)
        before = (self.values, self.characters)
        self._count(1, len(event.value) if isinstance(event, yaml.ScalarEvent) else 0, line)
        node = super().compose_node(parent, index)
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[id(node)] = (self.values - before[0], self.characters - before[1])
        return node

    def _count(self, values: int, characters: int, line: int, alias: str | None = None) -> None:
        self.values += values
        self.characters += characters
        if self.values > MAX_POLICY_VALUES:
            repeats = f" ({alias} repeats {values:,})" if alias else ""
            raise PolicyError(f"the policy has more than {MAX_POLICY_VALUES:,} YAML values, "
                              f"an alias counting as the values it repeats{repeats}; a policy "
                              "needs a few hundred", file=self.file, line=line)
        if self.characters > MAX_POLICY_SIZE:
            repeats = f" ({alias} repeats {characters:,})" if alias else ""
            raise PolicyError(f"the policy has more than {MAX_POLICY_SIZE:,} characters of "
                              f"values, an alias counting as the characters it repeats{repeats}",
                              file=self.file, line=line)


def _read_yaml(text: str, file: str) -> tuple[Any, dict[Location, int]]:
    loader = _BoundedLoader(text, file)
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
