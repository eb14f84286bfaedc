"""Validate JSON bodies against component schemas of the official OpenAI OpenAPI spec.

The simulator is only useful if the bodies it produces look like the real API's,
so tests check them against the published spec rather than against our own idea
of the API. The spec is big (~3 MB), so it is loaded once and validators are
cached per component name.

Spec quirks handled here:

* The document is OpenAPI 3.1 (JSON Schema 2020-12) but still carries ~100
  OpenAPI 3.0 ``nullable: true`` markers, which 2020-12 ignores. The real API
  does send ``null`` for those fields, so ``nullable: true`` is rewritten to
  ``anyOf: [<schema>, {"type": "null"}]`` before validating.
* ``oneOf`` + ``discriminator`` (OpenAPI's tagged union) is not exclusive in
  JSON Schema terms: e.g. a Responses ``input`` message without a ``type``
  matches both ``EasyInputMessage`` and ``Item``, so strict ``oneOf`` rejects
  a body the real API accepts. Where a ``discriminator`` is present, ``oneOf``
  is read as ``anyOf`` (the instance must still match one of the branches).
* Other ``x-*`` keywords are annotations and are left alone.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:openai:openapi"
_DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "openai-openapi" / "openapi.json"


def spec_path() -> Path:
    """Where the spec lives: ``$OPENAI_OPENAPI_SPEC`` or ``../shared/openai-openapi/openapi.json``."""
    override = os.environ.get("OPENAI_OPENAPI_SPEC")
    return Path(override) if override else _DEFAULT_SPEC_PATH


def _rewrite_openapi_isms(node: Any) -> Any:
    """Turn ``nullable: true`` and discriminated ``oneOf`` into plain JSON Schema 2020-12, recursively."""
    if isinstance(node, list):
        return [_rewrite_openapi_isms(item) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {key: _rewrite_openapi_isms(value) for key, value in node.items()}
    if isinstance(rewritten.get("discriminator"), dict) and isinstance(rewritten.get("oneOf"), list):
        rewritten["anyOf"] = rewritten.pop("oneOf")
    if rewritten.get("nullable") is True:
        del rewritten["nullable"]
        return {"anyOf": [rewritten, {"type": "null"}]}
    return rewritten


@functools.cache
def load_spec() -> dict[str, Any]:
    """The whole spec document, OpenAPI-isms rewritten (loaded once per process)."""
    path = spec_path()
    document = orjson.loads(path.read_bytes())
    if not isinstance(document, dict) or "components" not in document:
        raise ValueError(f"{path} does not look like an OpenAPI document")
    rewritten = _rewrite_openapi_isms(document)
    assert isinstance(rewritten, dict)
    return rewritten


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(load_spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


@functools.cache
def component_validator(name: str) -> jsonschema.Draft202012Validator:
    """A cached validator for ``#/components/schemas/<name>``; KeyError if there is no such component."""
    if name not in load_spec()["components"]["schemas"]:
        raise KeyError(f"no component schema named {name!r} in {spec_path()}")
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def validate_component(name: str, instance: object) -> None:
    """Raise ``jsonschema.ValidationError`` (the most relevant one) if ``instance`` is not a valid ``name``."""
    validator = component_validator(name)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error
