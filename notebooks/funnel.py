# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The funnel: retrieval → pre-ranking → ranking → re-ranking
#
# What you will learn: how one request travels through the served funnel — how many
# candidates each stage keeps and how long each takes — and how to build one from a
# trained run:
#
# | stage | what | keeps |
# |---|---|---:|
# | user tower | the run's `jax.export`ed user tower, once per request | 1 vector |
# | retrieval | ScaNN over the item embeddings | 1,000 |
# | consumed removed | items the customer already has | ≤ 1,000 |
# | pre-ranking | exact dot products with the same user vector | 200 |
# | ranking | the multi-task (MMoE) ranker, value = Σ weight × task score | 50 |
# | re-ranking | MMR diversity, at most 2 items per category | k |
#
# Size: `RECJAX_NOTEBOOK_SIZE=small` serves the Online Retail smoke run (30 steps) with a
# ranker trained for 20 steps (about 2 minutes on 2 CPU cores; the lists are
# then not good, the plumbing and the timings are real); the default, `full`, trains
# the main job and the ranker in full (several minutes). Runs go under
# `RECJAX_NOTEBOOK_WORKDIR` (default `runs/notebooks/`); a finished run and ranker are
# reused when the notebook runs again.

# %%
import json
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from recjax.config import load_experiment
from recjax.export.exporter import export_run
from recjax.export.ranker import run_ranker_export
from recjax.funnel_job import response_lines
from recjax.main_job import load_config, train_and_evaluate
from recjax.ranker_job import train_run_ranker
from recjax.serving.funnel import Funnel, FunnelConfig
from recjax.serving.recommender import ServingConfig
from recjax.serving.requests import RecommendRequest

SIZE = os.environ.get("RECJAX_NOTEBOOK_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"RECJAX_NOTEBOOK_SIZE must be 'small' or 'full', not {SIZE!r}")
SMALL = SIZE == "small"
# The repository root: where the experiment configs are (Jupyter starts in notebooks/).
REPO = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "experiments").is_dir())
RUNS = Path(os.environ.get("RECJAX_NOTEBOOK_WORKDIR", REPO / "runs" / "notebooks"))
OUT = RUNS / f"funnel_{SIZE}"  # the run, its bundle, figures and summary.json

# %% [markdown]
# ## A retrieval run and its ranker
#
# The two-tower run is the main job (`train_and_evaluate`, as `recjax train`). The
# ranker (`train_run_ranker`, as `recjax train-ranker`) is an MMoE with one head per
# outcome (purchase, repeat purchase, cancellation, log quantity), trained on the same
# log with the run's validation and test events held out, then exported into the run's
# workdir with per-user and per-item features precomputed, so that a request costs
# table lookups.

# %%
config = load_experiment(
    str(REPO / "experiments" / ("online_retail.py:smoke" if SMALL else "online_retail.py"))
)
workdir = OUT / "run"
if not (workdir / "results.json").is_file():
    train_and_evaluate(config, workdir, progress=not SMALL)
if run_ranker_export(workdir) is None:
    train_run_ranker(workdir, max_steps=20 if SMALL else None, progress=not SMALL)

# %% [markdown]
# ## The bundle and the funnel
#
# The funnel serves from a bundle only — no training code: `export_run` writes the
# run's user tower, item embeddings, ScaNN index, vocabularies and its exported ranker
# (as `recjax export`). `Funnel` verifies every file's checksum.

# %%
bundle = OUT / "bundle"
shutil.rmtree(bundle, ignore_errors=True)  # the run may have changed: export it afresh
export_run(workdir, bundle)
funnel_config = FunnelConfig()  # 1,000 → 200 → 50 → k; Online Retail's task weights
funnel = Funnel(bundle, funnel_config, ServingConfig(cache_seconds=0))
catalogue = len(funnel.recommender.catalogue_ids)
print(f"catalogue: {catalogue:,} items; ranker tasks:", [t.name for t in funnel.ranker.tasks])
print("task weights:", dict(funnel_config.task_weights))

# %% [markdown]
# ## One request
#
# Customer 12347, ten items. The first call compiles the exported models, so we time
# the second. The response lists every stage with the candidates it kept and its
# latency, and every item with each stage's score.

# %%
request = RecommendRequest(user="12347", k=10)
funnel.recommend(request)  # warm-up: compiles
response = funnel.recommend(request)
print("\n".join(response_lines(response)))

# %%
# The user tower makes one vector, not a candidate list: it has a latency, no count.
counts = {"catalogue": catalogue}
counts |= {s["name"]: s["candidates"] for s in response["stages"] if s["name"] != "user_tower"}
latency = {stage["name"]: stage["latency_ms"] for stage in response["stages"]}

fig, (count_axis, time_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
for axis, values, color, unit in (
    (count_axis, counts, "tab:blue", "{:,}"),
    (time_axis, latency, "tab:orange", "{:.2f}"),
):
    rows = np.arange(len(values))[::-1]  # the first stage at the top
    axis.barh(rows, list(values.values()), color=color)
    axis.set_yticks(rows, list(values))
    for y, number in zip(rows, values.values(), strict=True):
        axis.text(number, y, " " + unit.format(number), va="center")
count_axis.set_xscale("log")
count_axis.set_xlim(right=catalogue * 8)  # room for the labels
count_axis.set_xlabel("candidates out (log scale)")
time_axis.set_xlim(right=max(latency.values()) * 1.3)
time_axis.set_xlabel("latency (ms)")
fig.suptitle(f"one request, user 12347: {response['latency_ms']:.1f} ms in all")
fig.tight_layout()
fig.savefig(OUT / "one_request.png")
plt.show()

# %% [markdown]
# ## Latency over many requests
#
# One request's timings are noisy. Here are every stage's latencies over requests for
# many different customers (user vectors are not cached: `cache_seconds=0`). The
# ranker — a forward pass of the MMoE over 200 candidates — and the user tower cost the
# most; retrieval over the whole catalogue stays well under a millisecond.

# %%
users = [str(user) for user in funnel.recommender.users.ids[: 30 if SMALL else 200]]
per_stage: dict[str, list[float]] = {}
totals = []
for user in users:
    answer = funnel.recommend(RecommendRequest(user=user, k=10))
    totals.append(answer["latency_ms"])
    for stage in answer["stages"]:
        per_stage.setdefault(stage["name"], []).append(stage["latency_ms"])

fig, axis = plt.subplots(figsize=(8, 3.8))
axis.boxplot(list(per_stage.values()), tick_labels=list(per_stage), showfliers=False)
axis.set_ylabel("latency (ms)")
axis.set_title(
    f"{len(users)} requests: whole request p50 {np.percentile(totals, 50):.1f} ms, "
    f"p99 {np.percentile(totals, 99):.1f} ms"
)
fig.tight_layout()
fig.savefig(OUT / "latency.png")
plt.show()

# %% [markdown]
# These pictures show cost, not quality: whether the ranker's order beats retrieval
# alone is measured on held-out purchases by `experiments/funnel_benchmark.py` (the
# README's Funnel section). To compare the two orders for one customer, look at the
# `retrieval` and `value` columns of the list above.
#
# ## Summary
#
# The numbers the tests check (`tests/test_notebooks.py`), also saved as `summary.json`.

# %%
summary = {
    "size": SIZE,
    "run": load_config(workdir).name,
    "k": request.k,
    "candidates": counts,
    "latency_ms": latency,
    "request_ms": response["latency_ms"],
    "items": [item["item"] for item in response["items"]],
    "p50_ms": {name: float(np.percentile(values, 50)) for name, values in per_stage.items()},
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
