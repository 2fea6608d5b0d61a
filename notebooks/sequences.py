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
# # Sequences: SASRec on Amazon Beauty, and what its attention looks at
#
# What you will learn: how to train a sequence encoder (SASRec: causal self-attention
# over a customer's ordered purchases) with the same job as the two-tower, how it
# compares with an order-free bag-of-events encoder, and how to read its attention
# weights — one customer's attention map, and which past events the query attends to on
# average.
#
# Data: the S3-Rec copy of Amazon Beauty (`Beauty.txt`, one line per user:
# `user item item ...`, oldest first), read from the path in the experiment config
# (`experiments/sequential.py`, `../shared/data/s3rec-seqrec/`).
#
# Size: `RECJAX_NOTEBOOK_SIZE=small` runs the `_smoke` variants (30 steps each, 300 users
# evaluated; about a minute and a half on 2 CPU cores; the metrics are then noise, the
# pictures show the mechanics); the default, `full`, runs the experiment's own variants
# (the published protocol: many epochs, early stopping on validation NDCG@10; not timed
# here, expect a long run per model on a CPU).
# Runs go under `RECJAX_NOTEBOOK_WORKDIR` (default `runs/notebooks/`); a finished run is
# reused when the notebook runs again.

# %%
import json
import os
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

from recjax.config import load_experiment
from recjax.data.splits import Role
from recjax.main_job import format_table, load_data, train_and_evaluate
from recjax.training.trainer import restore_trained

SIZE = os.environ.get("RECJAX_NOTEBOOK_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"RECJAX_NOTEBOOK_SIZE must be 'small' or 'full', not {SIZE!r}")
SMALL = SIZE == "small"
# The repository root: where the experiment configs are (Jupyter starts in notebooks/).
REPO = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "experiments").is_dir())
RUNS = Path(os.environ.get("RECJAX_NOTEBOOK_WORKDIR", REPO / "runs" / "notebooks"))
OUT = RUNS / f"sequences_{SIZE}"  # the runs, figures and summary.json
EXPERIMENT = REPO / "experiments" / "sequential.py"


def variant(architecture: str) -> str:
    return f"beauty_{architecture}" + ("_smoke" if SMALL else "")


# %% [markdown]
# ## The config and the data
#
# `experiments/sequential.py` has one variant per (dataset, model). Its config says
# where the data is; the sequences are the user: SASRec reads the last 50 items.

# %%
config = load_experiment(f"{EXPERIMENT}:{variant('sasrec')}")
print(f"data: {config.data.format} at {config.data.path}")
if not Path(config.data.path).is_file():
    raise FileNotFoundError(f"{config.data.path} is missing: this notebook needs Beauty.txt")
print(config.model)
data = load_data(config)

# %%
lengths = data.timelines.lengths
fig, axis = plt.subplots(figsize=(7, 3.5))
axis.hist(lengths, bins=np.arange(0, 60, 2))
axis.axvline(config.examples.history_length, color="black", linestyle="--", label="history kept")
axis.set_xlabel("purchases per user")
axis.set_ylabel("users")
axis.set_title(f"Amazon Beauty: {len(lengths):,} users, median {np.median(lengths):.0f} events")
axis.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Train SASRec, then the bag-of-events baseline
#
# Both use the same job as the two-tower (`train_and_evaluate`): full-softmax
# next-item loss at every position of packed sequences, validation NDCG@10 to pick the
# step, full ranking on test with the user's earlier items removed. The bag-of-events
# encoder has the same item table and input layer but pools the history with a causal
# mean: it knows *which* items a user had, not their order.

# %%
workdirs = {architecture: OUT / architecture for architecture in ("sasrec", "bag_of_events")}
results = {}
for architecture, workdir in workdirs.items():
    run_config = load_experiment(f"{EXPERIMENT}:{variant(architecture)}")
    results[architecture] = train_and_evaluate(run_config, workdir, progress=not SMALL)

# %% [markdown]
# ## Does order help?
#
# Test metrics of both encoders, with the baselines from the SASRec run (popularity,
# and co-occurrence with the user's last item). In small mode the encoders have had 30
# steps: expect numbers near zero.

# %%
table = {
    "sasrec": results["sasrec"]["metrics"]["sasrec"],
    "bag_of_events": results["bag_of_events"]["metrics"]["bag_of_events"],
    "popularity": results["sasrec"]["metrics"]["popularity"],
    "cooccurrence": results["sasrec"]["metrics"]["cooccurrence"],
}
print(format_table(table, title=f"test metrics ({SIZE})"))

fig, axis = plt.subplots(figsize=(7, 3.5))
names = list(table)
for offset, metric in ((-0.2, "recall@10"), (0.2, "ndcg@10")):
    axis.bar(np.arange(len(names)) + offset, [table[n][metric] for n in names], 0.4, label=metric)
axis.set_xticks(np.arange(len(names)), names)
axis.set_title("Amazon Beauty, test, full ranking (earlier items removed)")
axis.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Attention maps
#
# Both attention block types sow their weights `[batch, heads, query l, key m]` as
# Flax `intermediates`; `apply(..., mutable=["intermediates"])` returns them next to the
# output. We encode test queries exactly as evaluation does (`query_features`: the
# left-padded history before the held-out item) and collect one array per layer.

# %%
trained = restore_trained(config, data, workdirs["sasrec"])
queries = data.eval_set(Role.TEST)
features = data.query_features(queries.positions, events=True)


def attention_maps(features: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One [b, heads, l, m] array of attention weights per layer, first layer first."""
    _, state = trained.model.apply(
        {"params": trained.state.params},
        features["user"],
        features["history"],
        features["context"],
        history_age_bl=features["history_age"],
        history_event_type_bl=features["history_event_type"],
        method="encode_users",
        mutable=["intermediates"],
    )
    leaves = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
    return [
        np.asarray(leaf)
        for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0]))
        if "attention_weights" in jax.tree_util.keystr(path)
    ]


# One customer with a history short enough to read (8 to 15 earlier purchases).
counts = (features["history"] != 0).sum(axis=1)
user_query = int(np.flatnonzero((counts >= 8) & (counts <= 15))[0])
one = {name: values[user_query : user_query + 1] for name, values in features.items()}
maps = attention_maps(one)
length = int(counts[user_query])
history = one["history"][0, -length:]  # the left padding dropped
labels = [str(item) for item in data.items.raw(history)]
num_heads = maps[0].shape[1]

fig, axes = plt.subplots(
    len(maps), num_heads, figsize=(4 * num_heads, 3.8 * len(maps)), squeeze=False
)
for layer, weights in enumerate(maps):
    for head in range(num_heads):
        axis = axes[layer, head]
        image = axis.imshow(weights[0, head, -length:, -length:], cmap="viridis", vmin=0)
        axis.set_title(f"layer {layer + 1}, head {head + 1}")
        axis.set_xticks(range(length), labels, rotation=90, fontsize=7)
        axis.set_yticks(range(length), labels, fontsize=7)
        axis.set_xlabel("attends to (key item)")
        axis.set_ylabel("at (query item)")
        fig.colorbar(image, ax=axis, fraction=0.046)
user = data.users.raw(data.timelines.users[data.timelines.row_of(queries.positions[[user_query]])])
fig.suptitle(f"SASRec attention of user {user[0]} over their {length} purchases (oldest first)")
fig.tight_layout()
fig.savefig(OUT / "attention_one_user.png")
plt.show()

# %% [markdown]
# Each row is one position of the history: a probability distribution over that
# position and the earlier ones (the upper triangle is the future, masked to zero). The
# bottom row is the query that scores the next item. The checks below, on 300 test
# users, are what the tests assert: every row of a real position sums to 1, and no
# weight reaches the future or the padding.

# %%
many = {name: values[:300] for name, values in features.items()}
many_maps = attention_maps(many)
real_bl = many["history"] != 0
causal_lm = np.tri(real_bl.shape[1], dtype=bool)  # key m at or before query l
# Rows of real positions only (a padding position attends to itself, to avoid an empty
# softmax; nothing reads its output).
row_sum_error = max(
    float(np.abs(w.sum(-1) - 1)[np.broadcast_to(real_bl[:, None], w.shape[:3])].max())
    for w in many_maps
)
outside_blm = real_bl[:, :, None] & ~(real_bl[:, None, :] & causal_lm)
outside_weight = max(
    float(np.abs(w)[np.broadcast_to(outside_blm[:, None], w.shape)].max()) for w in many_maps
)
print(
    f"largest |row sum - 1|: {row_sum_error:.2e}; largest weight on the future or padding: "
    f"{outside_weight:.2e}"
)

# %% [markdown]
# ## What the query attends to, on average
#
# The last position's attention (averaged over heads) by how far back each event is,
# over test users with at least 10 earlier purchases. A bag-of-events encoder would put
# the same weight, 1/n, on every event; a curve that falls with distance means SASRec
# leans on the most recent purchases.

# %%
long_enough = real_bl.sum(axis=1) >= 10
depth = 10
fig, axis = plt.subplots(figsize=(7, 3.5))
for layer, weights in enumerate(many_maps):
    last_row = weights[long_enough, :, -1, :].mean(axis=1)  # [users, m]: heads averaged
    axis.plot(
        range(depth), last_row[:, ::-1][:, :depth].mean(axis=0), "o-", label=f"layer {layer + 1}"
    )
uniform = float(np.mean(1.0 / real_bl[long_enough].sum(axis=1)))
axis.axhline(uniform, color="gray", linestyle="--", label="uniform (bag of events)")
axis.set_ylim(bottom=0)
axis.set_xlabel("events back from the latest (0 = the latest itself)")
axis.set_ylabel("mean attention weight")
axis.set_title(f"SASRec query attention by recency ({int(long_enough.sum())} test users)")
axis.legend()
fig.tight_layout()
fig.savefig(OUT / "attention_by_recency.png")
plt.show()

# %% [markdown]
# ## Summary
#
# The numbers the tests check (`tests/test_notebooks.py`), also saved as `summary.json`.

# %%
summary = {
    "size": SIZE,
    "metrics": {name: {k: table[name][k] for k in ("recall@10", "ndcg@10")} for name in table},
    "layers": len(many_maps),
    "heads": num_heads,
    "attention_shape": list(many_maps[0].shape),
    "row_sum_error": row_sum_error,
    "outside_weight": outside_weight,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
