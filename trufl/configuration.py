"""Which configuration a run is: the label every table row carries, so that no row runs a
setting chosen for another method without saying so.

* ``shared`` — no recipe: the repository's shared defaults (chosen on TRUFL's text job);
* ``paper`` — a recipe (``trufl/conf/recipe/``): the method as its paper and reference code
  configure it (model, loss schedule, optimiser), at this repository's budget or, with
  ``scale=paper``, at the paper's;
* ``reference-optimiser`` — a recipe with its reference code's optimiser exactly as that
  code runs it (``optim=<method>_reference``), to reproduce the reference's curve;
* ``tuned``, ``support-matched`` — set explicitly by the presets that make those blocks.
"""

from __future__ import annotations

from typing import Literal

Configuration = Literal["shared", "paper", "reference-optimiser", "tuned", "support-matched"]


def run_configuration(cfg) -> str:
    """The label of a composed config (``configuration`` when set, else derived from
    ``recipe_name`` and ``optim.preset``); ``ValueError`` for a recipe run with another
    method's optimiser."""
    if cfg.get("configuration"):
        return str(cfg.configuration)
    recipe = cfg.get("recipe_name")
    if not recipe:
        return "shared"
    method = str(recipe).split("_")[0]
    preset = (cfg.get("optim") or {}).get("preset", "shared")
    if preset == method:
        return "paper"
    if preset == f"{method}_reference":
        return "reference-optimiser"
    raise ValueError(f"recipe={recipe} with optim={preset}: a recipe runs its own optimiser (optim={method}) or its "
                     f"reference code's (optim={method}_reference); set configuration=... to label anything else")
