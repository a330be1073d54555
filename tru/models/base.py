"""The backbone contract. Unlearning, audits and reports talk to a backbone only through
this interface, so they never name a backbone's attributes.

A backbone is built from (its params section, n_users, n_items, modality features) and
- `set_graph(pairs, active_items)` rebuilds every structure derived from data;
- `loss(users, pos, neg)` gives the training loss of a batch (and its parts);
- `embeddings()` gives final user and item embeddings; scores are their dot products;
- `branches()` names its parameter groups: "id", one per modality, "fusion";
- `selection_modules()` lists named parameter groups for layer selection;
- `erase_rows()` resets the parameter rows private to deleted users / items exactly (what a
  retrain leaves for an entity without data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # annotations only
    from tru.config import ModelParams
    from tru.data.dataset import InteractionData

BACKBONES: dict[str, type[Recommender]] = {}


def register_backbone(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: registers a Recommender subclass under `name` (and sets its
    `backbone_name`); returns the class unchanged."""

    def deco(cls: type[Recommender]) -> type[Recommender]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        BACKBONES[name] = cls
        cls.backbone_name = name
        return cls

    return deco


class Recommender(nn.Module):
    """The backbone contract (see the module docstring): built from its params section, the
    catalogue sizes and the modality features; subclasses implement the methods below."""

    backbone_name = "abstract"

    def __init__(self, n_users: int, n_items: int, params: dict, features: dict[str, np.ndarray]):
        super().__init__()
        if not features:
            raise ValueError(f"{self.backbone_name} needs at least one modality")
        self.n_users = n_users
        self.n_items = n_items
        self.params = dict(params)
        self.modality_names = list(features)
        self.modality_dims = {m: int(np.asarray(f).shape[1]) for m, f in features.items()}

    # --- data-derived structures -------------------------------------------------
    def set_graph(self, pairs: np.ndarray, active_items: np.ndarray | None = None) -> None:
        """Rebuild every structure derived from data from the interactions `pairs` [n, 2]
        (user, item); `active_items`: boolean mask of the items still in the catalogue."""
        raise NotImplementedError

    # --- training ------------------------------------------------------------------
    def generator_states(self) -> dict[str, torch.Tensor]:
        """The state of random generators of the model's own that training draws from (torch's
        global one aside): a resumed run restores it to continue bit for bit."""
        return {}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        """Restore what `generator_states` returned."""
        if states:
            raise ValueError(f"{type(self).__name__} has no generator {', '.join(sorted(states))}")

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a batch of (user, positive item, negative item) index tensors:
        (the scalar loss with its graph, {part name: float value} of its terms)."""
        raise NotImplementedError

    # --- inference -----------------------------------------------------------------
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user [n_users, dim] and item [n_items, dim] embeddings; scores are their dot
        products."""
        raise NotImplementedError

    def modality_views(self) -> dict[str, torch.Tensor]:
        """The unimodal embeddings: per branch ("id" and each modality) the view of every
        node [n_users + n_items, dim] before the branches are fused, with gradients
        (MultiDelete's decoupling and unimodal retention work on them)."""
        raise NotImplementedError

    def views_and_embeddings(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """`modality_views()` and the fused embeddings of every node [n_users + n_items, dim]
        (users first), from one forward pass where the backbone allows it."""
        return self.modality_views(), torch.cat(self.embeddings())

    def score_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Computes the embeddings once; returns users -> full score rows [batch, n_items]."""
        with torch.no_grad():
            u, i = self.embeddings()
        it = i.T.contiguous()
        return lambda users: u[users] @ it

    # --- structure for unlearning ---------------------------------------------------------
    def branches(self) -> dict[str, list[str]]:
        """Parameter names per branch: "id", one per modality, "fusion"."""
        raise NotImplementedError

    def selection_modules(self) -> dict[str, list[str]]:
        """Parameter names per module that layer selection picks from (module name -> names)."""
        raise NotImplementedError

    def linear_parameters(self) -> list[str]:
        """The parameter tables the backbone's graph propagation acts on linearly (ScaleGUN's
        Newton step works there)."""
        raise NotImplementedError

    def item_tables(self) -> list[str]:
        """Trainable tables with one row per item (an item's own parameters); [] when the
        backbone encodes items from their features only."""
        return []

    def user_rows_loss(
        self, users: np.ndarray, approximate: bool = False
    ) -> Callable[..., tuple[torch.Tensor, dict[str, float]]] | None:
        """`loss` for a fit that moves only `users`' rows of the user tables, everything else
        fixed (a re-fit), computed without a whole forward pass per step where the backbone can:
        a function of (users, pos, neg) equal to `loss` while only those rows change (the
        other parameters, the graphs and the rows of other users as they are now). None: the
        backbone has no such shortcut, and the caller uses `loss`. `approximate`: a backbone
        whose training loss is random in the fixed part too (dropout) may return an
        approximation it documents instead (MIG-GT); one with an exact shortcut ignores it."""
        return None

    def item_rows_loss(self, items: np.ndarray) -> Callable[..., tuple[torch.Tensor, dict[str, float]]] | None:
        """`loss` for a fit that moves only `items`' rows of `item_tables()`, everything else
        fixed (the item re-fit), as user_rows_loss is for users. None: the backbone has no such
        shortcut, and the caller uses `loss`."""
        return None

    def erase_rows(self, users: np.ndarray, items: np.ndarray, generator: torch.Generator) -> list[str]:
        """Exact erasure of parameters private to deleted entities: set the rows that belong to
        `users` and `items` alone to what a retrain leaves for an entity without interactions
        (a fresh draw from the initialisation, or the raw features). Returns the names of the
        parameters it changed."""
        raise NotImplementedError

    def config(self) -> dict:
        """Everything needed to rebuild the module (with the data), as plain JSON."""
        return {
            "backbone": self.backbone_name,
            "params": self.params,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "modalities": self.modality_dims,
        }


def build_backbone(name: str, params: dict, n_users: int, n_items: int, features: dict[str, np.ndarray]) -> Recommender:
    """A new, freshly initialised backbone `name` (torch's global generator draws its weights)."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](params=params, n_users=n_users, n_items=n_items, features=features)


def backbone_for(model: ModelParams, data: InteractionData) -> Recommender:
    """A new backbone as params.yaml's `model` section configures it (`model.backbone` and that
    backbone's section), sized for `data`'s users, items and modality features."""
    section = getattr(model, model.backbone).model_dump()
    return build_backbone(model.backbone, section, data.n_users, data.n_items, data.features)
