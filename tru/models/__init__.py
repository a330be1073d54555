"""Backbones: a small contract (tru.models.base) and a registry of implementations."""

from tru.models import mgcn as _mgcn  # noqa: F401  (registers "mgcn")
from tru.models import miggt as _miggt  # noqa: F401  (registers "miggt")
from tru.models.base import BACKBONES, Recommender, backbone_for, build_backbone, register_backbone

__all__ = ["BACKBONES", "Recommender", "backbone_for", "build_backbone", "register_backbone"]
