"""Fine-tuning methods behind one registry: ``get_method("lora")``.

Each module of this package defines one method and registers it with ``@register``; adding a
method is adding a module here (modules are discovered, not listed).
"""

from __future__ import annotations

import importlib
import pkgutil

from tuner.methods._base import Method, register, registry


class UnknownMethodError(ValueError):
    """The user named a method no module here defines."""


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def available_methods() -> list[str]:
    _discover()
    return sorted(registry())


def get_method(name: str) -> Method:
    """A fresh instance of the method called ``name`` (instances hold per-worker state)."""
    _discover()
    try:
        return registry()[name]()
    except KeyError:
        known = ", ".join(sorted(registry()))
        raise UnknownMethodError(f"unknown method {name!r}; choose one of: {known}") from None


__all__ = ["Method", "UnknownMethodError", "available_methods", "get_method", "register"]
