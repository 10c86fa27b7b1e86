"""Dequantisers: categories ↔ continuous latents, all behind one interface."""

from .argmax import ArgmaxDequantiser
from .base import Dequantiser
from .catnf import CatNFDequantiser
from .truncated import TruflDequantiser
from .uniform import UniformDequantiser

__all__ = ["Dequantiser", "TruflDequantiser", "CatNFDequantiser", "ArgmaxDequantiser", "UniformDequantiser"]
