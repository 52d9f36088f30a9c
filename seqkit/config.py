"""Settings by name: one helper that both commands (and notebook users) configure runs with.

A run's configuration is a dataclass whose fields may be dataclasses themselves (the
model's shape, the optimizer's settings). :func:`override` replaces settings by their
field names wherever they sit, so a caller says ``units=512, lr=1e-3`` without knowing
which part holds each.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from seqkit.errors import SeqkitError

Config = TypeVar("Config")


def field_names(config: Any) -> set[str]:
    """Every setting ``config`` holds, nested ones included."""
    names = set()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        names |= field_names(value) if dataclasses.is_dataclass(value) else {f.name}
    return names


def override(config: Config, **settings: Any) -> Config:
    """``config`` with ``settings`` replaced by name, in whichever part holds each; None
    values leave a setting as it is. An unknown name is a :class:`SeqkitError`."""
    settings = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(settings) - field_names(config))
    if unknown:
        raise SeqkitError(f"Unknown setting {', '.join(f'`{name}`' for name in unknown)}.")
    return _replace(config, settings)


def _replace(config: Config, settings: dict[str, Any]) -> Config:
    changes = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            nested = field_names(value) & set(settings)
            if nested:
                changes[f.name] = _replace(value, {k: settings[k] for k in nested})
        elif f.name in settings:
            changes[f.name] = settings[f.name]
    return dataclasses.replace(config, **changes)
