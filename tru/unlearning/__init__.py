"""Unlearning: the methods (each in its own module, registered by name in
tru.unlearning.registry), the steps they share (tru.unlearning.steps), TRU's mechanisms, the
probes (reverse loss, gradient energies) that both the component map and TRU use, and the
final repair.

The public API: build an `UnlearnContext`, call `run_method(name, ctx, params)`, get an
`UnlearnResult` (model, log, seconds); `METHODS` lists the registered methods."""

from tru.unlearning import ascent as _ascent  # noqa: F401  (registers "gradient_ascent")
from tru.unlearning import exact as _exact  # noqa: F401  (registers "exact")
from tru.unlearning import multidelete as _multidelete  # noqa: F401  (registers "multidelete")
from tru.unlearning import retrain as _retrain  # noqa: F401  (registers "retrain")
from tru.unlearning import reverse_repair as _reverse_repair  # noqa: F401  (registers "reverse_repair", "tru")
from tru.unlearning import scalegun as _scalegun  # noqa: F401  (registers "scalegun")
from tru.unlearning import ultrare as _ultrare  # noqa: F401  (registers "ultrare")
from tru.unlearning.registry import METHODS, UnlearnContext, UnlearnResult, register_method, run_method

__all__ = ["METHODS", "UnlearnContext", "UnlearnResult", "register_method", "run_method"]
