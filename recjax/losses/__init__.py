"""Losses: plain functions over arrays."""
