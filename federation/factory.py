"""References to factories by import path, so configuration stays plain JSON.

A site's data source, authorizer and audit sink are built inside the process
that runs its ClientApp (a Ray worker in simulation, a SuperNode's ClientApp
process in deployment). Only their *recipe* travels: ``"module:callable"`` and
keyword arguments.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.errors import JobConfigError

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class FactoryRef:
    """``target`` is ``"package.module:callable"``; ``kwargs`` are JSON values."""

    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _TARGET.match(self.target):
            raise JobConfigError(f"factory target must be 'module:callable', got {self.target!r}")

    def build(self, **extra: Any) -> Any:
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise JobConfigError(f"cannot import factory {self.target}") from exc
        return obj(**{**dict(self.kwargs), **extra})

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FactoryRef:
        if not isinstance(data, Mapping) or not isinstance(data.get("target"), str):
            raise JobConfigError("factory reference needs a 'target' string")
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise JobConfigError("factory 'kwargs' must be an object")
        return cls(data["target"], dict(kwargs))
