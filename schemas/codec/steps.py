"""What a conversion did to a schema, one :class:`Step` per transformation and place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Step"]


@dataclass(frozen=True)
class Step:
    """One transformation applied to the user's schema on the way to the strict schema."""

    path: str
    """Where in the user's schema, as a JSON path: ``$.properties.tags``."""
    kind: str
    """What was done: ``optional-nullable``, ``wrap-root``, ``map-as-pairs``, ``extra-keys-channel``,
    ``allof-merge``, ``union-distribute``, ``ref-hoist``, ``any-as-json-string``, ``enum-as-json``, ``type-split``,
    ``oneof-as-anyof``, ``tuple-as-array``, ``local-check``, ``limit-collapse``, ``limit-enum``, ``dropped``."""
    lossy: bool
    """True when strict decoding no longer guarantees it and it is checked locally (the user's schema, on every
    answer); such a step is announced at submit."""
    note: str
    """What is checked locally instead, or how the inverse restores it."""

    def warning(self, schema: str = "") -> str:
        """The line ``submit`` prints for a lossy step."""
        prefix = f"schema {schema}: " if schema else ""
        return f"{prefix}{self.path}: {self.note}"
