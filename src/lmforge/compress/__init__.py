"""Shrink a model: quantize, prune, distill, export."""
