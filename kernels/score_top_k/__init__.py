"""Fused score + top-k: dot products against a catalogue, block by block, keeping the best k."""
