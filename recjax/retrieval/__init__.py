"""Candidate retrieval over item embeddings: exact top-k and ScaNN approximate search."""
