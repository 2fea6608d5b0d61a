"""Flax linen models: towers, encoders, rankers. Pure functions of their params."""
