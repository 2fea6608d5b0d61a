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
# # Quickstart: the main job, step by step
#
# What you will learn: what `recjax train` does on the embedded UCI Online Retail data,
# one step at a time —
#
# 1. load the transaction log and see what the loader kept and dropped;
# 2. split each customer's purchases leave-last-out (last one test, the one before it
#    validation);
# 3. train the two-tower retrieval model (sampled softmax, logQ correction);
# 4. plot its learning curve from the run's `metrics.jsonl`;
# 5. evaluate it by full ranking against the popularity and co-occurrence baselines,
#    and plot Recall@K against K;
# 6. recommend items for one customer.
#
# Size: `RECJAX_NOTEBOOK_SIZE=small` trains 200 steps and evaluates 1,000 customers
# (about a minute on 2 CPU cores; what the tests run); the default, `full`, is the main
# job's own config (4–5 minutes with validation). Runs are written under
# `RECJAX_NOTEBOOK_WORKDIR` (default `runs/notebooks/`); running the notebook again
# reuses a finished run instead of training again.

# %%
import dataclasses
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from recjax.config import load_experiment
from recjax.data.splits import Role
from recjax.embeddings import item_vectors, user_vectors
from recjax.evaluation.retrieval_suite import evaluate_retrieval, limited_eval_set
from recjax.main_job import format_table, load_data, train_and_evaluate
from recjax.recommend import recommend
from recjax.training.trainer import restore_trained

SIZE = os.environ.get("RECJAX_NOTEBOOK_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"RECJAX_NOTEBOOK_SIZE must be 'small' or 'full', not {SIZE!r}")
SMALL = SIZE == "small"
# The repository root: where the experiment configs are (Jupyter starts in notebooks/).
REPO = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "experiments").is_dir())
RUNS = Path(os.environ.get("RECJAX_NOTEBOOK_WORKDIR", REPO / "runs" / "notebooks"))
OUT = RUNS / f"quickstart_{SIZE}"  # the run, figures and summary.json

# %% [markdown]
# ## The experiment config
#
# One frozen dataclass tree holds everything a run needs. `experiments/online_retail.py`
# returns the main job's; we validate during training (to draw a validation curve next
# to the loss), and in small mode stop after 200 steps and evaluate 1,000 customers.

# %%
config = load_experiment(str(REPO / "experiments" / "online_retail.py"))
config = dataclasses.replace(
    config,
    train=dataclasses.replace(
        config.train,
        max_steps=200 if SMALL else None,
        log_every_steps=10 if SMALL else config.train.log_every_steps,
        validate_every_epochs=0.2 if SMALL else 0.5,
    ),
    eval=dataclasses.replace(config.eval, max_users=1000 if SMALL else None, show_examples=1),
)
workdir = OUT / "run"
print(f"{SIZE} run in {workdir}")
print(config.model)

# %% [markdown]
# ## 1. Load
#
# The reader prints what it did with every row: anonymous checkouts and non-product
# codes (postage, fees) are removed, repeated lines of one invoice merged,
# cancellations kept as their own event type. `RetrievalData` then builds the
# vocabularies, one timeline per customer and the split.

# %%
data = load_data(config)
data.statistics()

# %% [markdown]
# ## 2. Split
#
# Leave-last-out: each customer's last purchase is the test target, the one before it
# validation; everything earlier is training data. The model is evaluated by ranking
# the *whole* catalogue for each customer, right before their held-out purchase.

# %%
role_counts = {role.name: int((data.roles == role).sum()) for role in Role}
print(role_counts)
user_row = int(np.argmax(data.timelines.lengths == 12))  # a customer with 12 purchases
start, end = data.timelines.offsets[user_row], data.timelines.offsets[user_row + 1]
for position in range(start, end):
    print(f"{Role(data.roles[position]).name:<6} {data.item_text[data.timelines.items[position]]}")

# %% [markdown]
# ## 3. Train (and evaluate)
#
# `train_and_evaluate` is the whole job that `recjax train` runs: it trains under `jit`
# on the device mesh with orbax checkpoints, keeps the step with the best validation
# NDCG@10, evaluates it against the baselines, benchmarks ScaNN against exact top-k and
# writes `results.json`. Re-running resumes from the run's last checkpoint.

# %%
results = train_and_evaluate(config, workdir, progress=not SMALL)

# %% [markdown]
# ## 4. The learning curve
#
# Every `log_every_steps` steps the trainer appends one JSON line of scalars to
# `metrics.jsonl` (and TensorBoard): the training loss (sampled softmax over in-batch
# and uniform negatives), and at each validation the validation NDCG@10.

# %%
records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
train_steps = [r["step"] for r in records if "train/loss" in r]
train_loss = [r["train/loss"] for r in records if "train/loss" in r]
valid_key = f"valid/{config.eval.selection_metric}"
valid = [(r["step"], r[valid_key]) for r in records if valid_key in r]

fig, loss_axis = plt.subplots(figsize=(7, 4))
loss_axis.plot(train_steps, train_loss, color="tab:blue", label="training loss")
loss_axis.set_xlabel("step")
loss_axis.set_ylabel("training loss", color="tab:blue")
if valid:
    valid_axis = loss_axis.twinx()
    valid_axis.plot(*zip(*valid, strict=True), "o-", color="tab:orange")
    valid_axis.set_ylabel(f"validation {config.eval.selection_metric}", color="tab:orange")
loss_axis.set_title("two-tower learning curve")
fig.tight_layout()
fig.savefig(OUT / "learning_curve.png")
plt.show()

# %% [markdown]
# ## 5. Evaluate against the baselines
#
# Full ranking over the catalogue at each customer's test purchase. Popularity ranks
# every item by its training purchases; co-occurrence scores the items bought near the
# customer's last item — a strong baseline in a shop where baskets repeat.

# %%
print(format_table(results["metrics"], title="test metrics"))

# %% [markdown]
# The job reports a few cut-offs. To see the whole curve, score the test queries again
# with the restored model at many K — the same public evaluation function, another
# `EvalConfig`.

# %%
trained = restore_trained(config, data, workdir)
params = trained.state.params
ks = (1, 2, 5, 10, 20, 50, 100, 200, 500)
eval_config = dataclasses.replace(config.eval, ks=ks)
queries = limited_eval_set(data, Role.TEST, eval_config)
curves = evaluate_retrieval(
    data,
    queries,
    user_vectors(trained.model, params, data.query_features(queries.positions, events=True)),
    item_vectors(trained.model, params, data),
    eval_config,
)

fig, axis = plt.subplots(figsize=(7, 4))
for name, metrics in curves.items():
    axis.plot(ks, [metrics[f"recall@{k}"] for k in ks], "o-", label=name)
axis.set_xscale("log")
axis.set_xlabel("K (items recommended)")
axis.set_ylabel("Recall@K")
catalogue = data.num_items - data.items.first_known  # index rows below it: padding, OOV
axis.set_title(f"test recall, {len(queries.positions):,} customers, {catalogue:,} items")
axis.legend()
fig.tight_layout()
fig.savefig(OUT / "recall_at_k.png")
plt.show()

# %% [markdown]
# ## 6. Recommendations for one customer
#
# After all of customer 12347's purchases: their last few items, then the model's top
# ten (items bought before are kept as candidates: repeat purchases are most of this
# shop's sales).

# %%
USER = "12347"
positions, rows = data.latest_positions(np.array([int(USER)]))
recent = data.timelines.history(positions, 5, rows)[0]
print(f"customer {USER} recently bought:")
for item in recent[recent > 0]:
    print(f"  {data.item_text[item]}")
recommendations = recommend(data, trained, USER, k=10, exclude_seen=config.eval.exclude_seen)
print("recommended:")
for rank, item in enumerate(recommendations, start=1):
    print(f"{rank:>3}  {item.score:6.3f}  {item.item:<8} {item.text}")

# %% [markdown]
# ## Summary
#
# The numbers the tests check (`tests/test_notebooks.py`), also saved as `summary.json`.

# %%
summary = {
    "size": SIZE,
    "steps": results["steps"],
    "first_loss": train_loss[0],
    "last_loss": train_loss[-1],
    "recall@10": {name: metrics["recall@10"] for name, metrics in results["metrics"].items()},
    "recall_at_k": {name: [metrics[f"recall@{k}"] for k in ks] for name, metrics in curves.items()},
    "recommended": [item.item for item in recommendations],
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
