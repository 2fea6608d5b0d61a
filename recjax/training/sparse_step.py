"""A two-tower train step whose embedding-table work costs what the batch touches.

For each sparse table, the batch's distinct ids (plus PAD) are gathered into a small
`[S, d]` block and the batch's ids are renumbered into it; the model runs as a copy whose
tables have S rows, so autodiff yields `[S, d]` row gradients — never a dense `[V, d]`
one. The dense parameters take the usual optax step; the tables take a row-sparse
Adagrad step (`sparse_optimizer`) that scatters the updated rows back in place.
Renumbering is a bijection that keeps PAD at 0 and preserves equality of ids, so the
loss equals the dense step's loss exactly (accidental-hit masking included).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from recjax.models.two_tower import TwoTower
from recjax.training import sparse_optimizer
from recjax.training.objective import two_tower_loss
from recjax.training.train_state import TrainState

# Which batch fields index which table, and the TwoTower size field of that table.
_TABLES = {
    "user_embedding": (("user",), "num_users"),
    "item_embedding": (("history", "item", "negative"), "num_items"),
    "context_embedding": (("context",), "num_contexts"),
    "token_embedding": (("item_tokens", "negative_tokens"), "num_text_buckets"),
}


@dataclasses.dataclass(frozen=True)
class SparseTable:
    name: str  # Parameter name of the table (its leaf is params[name]["embedding"]).
    fields: tuple[str, ...]  # Batch fields holding its ids.
    num_rows: int  # V.
    max_unique: int  # S: the most distinct ids (plus PAD) one batch can hold.


def sparse_tables(model: TwoTower, batch: dict[str, Any]) -> tuple[SparseTable, ...]:
    """The tables worth updating sparsely: those a batch cannot cover whole (S < V)."""
    tables = []
    for name, (fields, size_field) in _TABLES.items():
        present = tuple(field for field in fields if field in batch)
        num_rows = getattr(model, size_field)
        max_unique = 1 + sum(int(jnp.size(batch[field])) for field in present)
        if present and max_unique < num_rows:
            tables.append(SparseTable(name, present, num_rows, max_unique))
    return tuple(tables)


def split_params(params: dict, tables: tuple[SparseTable, ...]) -> tuple[dict, dict]:
    """(dense params, {table name: [V, d] table})."""
    names = {table.name for table in tables}
    dense = {key: value for key, value in params.items() if key not in names}
    return dense, {name: params[name]["embedding"] for name in names}


def init_sparse_state(
    rng: jax.Array,
    model: TwoTower,
    batch: dict,
    dense_tx: optax.GradientTransformation,
    tables: tuple[SparseTable, ...],
    table_optimizer: str = "adagrad",
) -> TrainState:
    """A TrainState whose opt_state is {"dense": ..., "tables": {name: {"embedding": rows
    state}}} (the "embedding" key lets the state shard like its table)."""
    init_rows, _ = _row_optimizer(table_optimizer)
    init_rng, state_rng = jax.random.split(rng)
    params = model.init(init_rng, batch)["params"]
    dense, table_params = split_params(params, tables)
    opt_state = {
        "dense": dense_tx.init(dense),
        "tables": {name: {"embedding": init_rows(table)} for name, table in table_params.items()},
    }
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        rng=state_rng,
        apply_fn=model.apply,
        tx=dense_tx,
    )


def make_sparse_train_step(
    model: TwoTower,
    tables: tuple[SparseTable, ...],
    *,
    temperature: float,
    table_learning_rate: float,
    table_optimizer: str = "adagrad",
):
    """`train_step(state, batch) -> (state, metrics)` with row-sparse table updates by
    `table_optimizer` (a `sparse_optimizer.ROW_OPTIMIZERS` name)."""
    _, update_rows = _row_optimizer(table_optimizer)
    local_model = model.clone(**{_TABLES[t.name][1]: t.max_unique for t in tables})

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        dense, table_params = split_params(state.params, tables)
        local_batch, row_ids, rows = dict(batch), {}, {}
        for table in tables:
            row_ids[table.name], local = _renumber(batch, table)
            local_batch.update(local)
            rows[table.name] = sparse_optimizer.gather_rows(
                table_params[table.name], row_ids[table.name]
            )

        def loss_fn(dense, rows):
            params = {**dense, **{name: {"embedding": r} for name, r in rows.items()}}
            return two_tower_loss(local_model, params, local_batch, rng, temperature=temperature)

        loss, (dense_grads, row_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1))(dense, rows)
        updates, dense_state = state.tx.update(dense_grads, state.opt_state["dense"], dense)
        new_params = optax.apply_updates(dense, updates)
        table_states = {}
        for table in tables:
            new_table, table_state = update_rows(
                table_params[table.name],
                state.opt_state["tables"][table.name]["embedding"],
                row_ids[table.name],
                row_grads[table.name],
                learning_rate=table_learning_rate,
            )
            new_params[table.name] = {"embedding": new_table}
            table_states[table.name] = {"embedding": table_state}
        metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm((dense_grads, row_grads))}
        return state.replace(
            step=state.step + 1,
            params=new_params,
            opt_state={"dense": dense_state, "tables": table_states},
        ), metrics

    return train_step


def _row_optimizer(name: str):
    if name not in sparse_optimizer.ROW_OPTIMIZERS:
        raise ValueError(
            f"Unknown sparse table optimizer {name!r}; expected one of "
            f"{', '.join(sparse_optimizer.ROW_OPTIMIZERS)}."
        )
    return sparse_optimizer.ROW_OPTIMIZERS[name]


def _renumber(
    batch: dict[str, jax.Array], table: SparseTable
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(row ids [S], the table's batch fields renumbered into them). PAD (0) is always
    included, so it is row 0 of the block and stays PAD."""
    ids = jnp.concatenate(
        [jnp.zeros(1, jnp.int32)]
        + [batch[field].ravel().astype(jnp.int32) for field in table.fields]
    )
    row_ids, local = sparse_optimizer.unique_rows(
        ids, size=table.max_unique, num_rows=table.num_rows
    )
    out, start = {}, 1
    for field in table.fields:
        size = batch[field].size
        out[field] = local[start : start + size].reshape(batch[field].shape)
        start += size
    return row_ids, out
