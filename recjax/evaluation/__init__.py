"""Offline evaluation: full-ranking metrics (Recall/HR/NDCG@K, MRR) and simple baselines."""
