"""Adapt a model: data formats and packing, PEFT methods, preference tuning, launch."""
