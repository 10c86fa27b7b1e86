"""trufl: learned dequantisers for categorical data — TRUFL, CatNF and Argmax flows."""

__version__ = "0.1.0"
