"""Embedding bag: gather the rows of multi-valent ids and pool them with weights."""
