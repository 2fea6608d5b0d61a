"""recjax: industrial recommendation in JAX (retrieval, ranking, serving)."""

__version__ = "0.1.0"
