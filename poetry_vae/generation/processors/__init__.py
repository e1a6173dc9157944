"""Decoding processors: one class per decoding option, each in its own module here.

Every module in this package is imported below, so a new processor is one new file (and its test): defining a
:class:`Processor` subclass registers it, and :class:`Pipeline` builds it from each request. See
docs/extending.md.
"""

import importlib
import pkgutil

from poetry_vae.generation.processors.base import Pipeline, Processor, Setup, check_constraints, where, without

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Pipeline", "Processor", "Setup", "check_constraints", "where", "without"]
