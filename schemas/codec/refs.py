"""``$ref`` resolution for the codec: every reference the user's schema makes, wherever its target lives.

References are resolved exactly as the validator resolves them (the ``referencing`` library, with the schema's own
draft): JSON pointers anywhere in the document (``#/thing``, ``#/definitions/A/definitions/B``), percent-encoded and
``~0``/``~1``-escaped names, anchors (``#foo``), ``$id``-relative URIs and the bundled meta-schemas. Nothing is
fetched: a reference to another document is a :class:`SchemaError` naming where it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema_specifications import REGISTRY as META_SCHEMAS  # type: ignore[import-untyped]
from referencing._core import Resolver  # the type of a resolver; the package exports no name for it

from schemas.codec.errors import SchemaError
from schemas.codec.keywords import iter_subschemas

__all__ = ["Refs"]


class Refs:
    """The reference resolver of one schema document, and where each of its subschemas sits."""

    def __init__(self, root: Any, meta_schema_id: str | None) -> None:
        self.root = root
        self.specification = referencing.jsonschema.specification_with(
            meta_schema_id or "", default=referencing.jsonschema.DRAFT202012
        )
        resource = self.specification.create_resource(root)
        registry: referencing.Registry[Any] = META_SCHEMAS.combine(referencing.Registry())
        self.resolver = registry.resolver_with_root(resource)
        self._locations: dict[int, str] | None = None

    def location(self, node: Any) -> str | None:
        """Where ``node`` sits in the document (``$.definitions.A``), or None (a meta-schema, say)."""
        if self._locations is None:  # only schemas with references need it: computed on first use
            self._locations = {id(n): where for where, n in iter_subschemas(self.root) if isinstance(n, Mapping)}
        return self._locations.get(id(node))

    def enter(self, resolver: Resolver[Any], node: Mapping[str, Any]) -> Resolver[Any]:
        """The resolver inside ``node``: a subschema with its own ``$id`` changes the base of its references."""
        if not any(isinstance(node.get(key), str) for key in ("$id", "id")):
            return resolver
        try:
            return resolver.in_subresource(self.specification.create_resource(node))
        except Exception:
            return resolver

    def lookup(self, ref: Any, resolver: Resolver[Any], where: str) -> tuple[Any, Resolver[Any]]:
        """The target of ``ref`` and the resolver for references inside it.

        Raises:
            SchemaError: ``ref`` is not a string, points nowhere, or into another document.
        """
        if not isinstance(ref, str):
            raise SchemaError(f"{where}: $ref must be a string, got {ref!r}")
        try:
            resolved = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as exc:
            if ref.startswith("#"):
                raise SchemaError(f"{where}: $ref {ref!r} does not point to a schema in this document") from None
            raise SchemaError(
                f"{where}: $ref {ref!r} refers to another document; only references inside the schema are "
                f"supported (bundle the referenced schema into $defs) ({type(exc).__name__})"
            ) from None
        except Exception as exc:  # a malformed pointer or URI
            raise SchemaError(f"{where}: $ref {ref!r} cannot be resolved: {type(exc).__name__}: {exc}") from None
        target = resolved.contents
        if not isinstance(target, Mapping | bool):
            raise SchemaError(f"{where}: $ref {ref!r} points to {type(target).__name__}, not to a schema")
        return target, resolved.resolver
