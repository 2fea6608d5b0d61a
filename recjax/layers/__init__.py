"""Flax linen layers shared by the models (embedding tables first)."""
