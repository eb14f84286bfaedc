"""How jobs travel through arq: the task name and the JSON (orjson) serializers. Never pickle.

arq pickles by default, and unpickling data from Redis executes whatever the data says. With these
functions a pickle planted in the queue fails to parse and arq marks the job failed without running it.
"""

from __future__ import annotations

from typing import Any

import orjson

TASK_NAME = "extract"
"""The arq function name producer and worker agree on."""


def serialize(obj: dict[str, Any]) -> bytes:
    # OPT_PASSTHROUGH_DATETIME is off: arq's dicts only hold str/int/list/dict; anything else is a bug we want loud.
    return orjson.dumps(obj, default=_reject)


def deserialize(data: bytes) -> dict[str, Any]:
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise ValueError("arq payload is not a JSON object")
    return value


def _reject(obj: object) -> object:
    # arq stores a failed job's exception as its result; keep its text, drop the object.
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise TypeError(f"cannot serialize {type(obj).__name__} as JSON")
