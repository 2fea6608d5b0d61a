"""Readers: raw files in, `EventLog` + `LoadReport` out. `load_events` picks one by format."""

from __future__ import annotations

import dataclasses
import importlib
from typing import NamedTuple

from recjax.data.event_log import EventLog
from recjax.data.report import LoadReport, OnError


class LoadResult(NamedTuple):
    events: EventLog
    report: LoadReport


@dataclasses.dataclass(frozen=True, kw_only=True)
class ColumnMapping:
    """Which source columns hold the EventLog fields (generic CSV/Parquet reader)."""

    user: str  # Column with user ids.
    item: str  # Column with item ids.
    timestamp: str  # Column with int seconds, or a date-time string/timestamp type.
    value: str | None = None  # Column with the event value (rating, quantity...); 1.0 if None.
    event_type: str | None = None  # Column with EventType names/ints; INTERACTION if None.
    features: tuple[str, ...] = ()  # Extra columns kept as per-event side features.


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the events come from and how strictly they are parsed."""

    format: str = "online_retail"  # One of `FORMATS`.
    path: str | None = None  # File or folder; None = the embedded Online Retail file.
    on_error: OnError = "raise"  # "skip" counts malformed rows in the report instead.
    columns: ColumnMapping | None = None  # Required by the "csv" and "parquet" formats.

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(
                f"Unknown data format {self.format!r}; expected one of {', '.join(FORMATS)}."
            )
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {self.on_error!r}.")


FORMATS = (
    "online_retail",
    "movielens_100k",
    "movielens_1m",
    "movielens_latest",
    "seqrec",
    "csv",
    "parquet",
    "tfds_movielens",
    "open_bandit",
    "ebnerd",
    "ebnerd_history",
)


def load_events(config: DataConfig) -> LoadResult:
    """Reads the events `config` describes; raises `DataFormatError`/`FileNotFoundError`."""
    strict = {"on_error": config.on_error}
    readers = {
        "online_retail": lambda: _reader("online_retail", "read_online_retail")(
            config.path, **strict
        ),
        "movielens_100k": lambda: _reader("movielens", "read_movielens_100k")(
            _need_path(config), **strict
        ),
        "movielens_1m": lambda: _reader("movielens", "read_movielens_1m")(
            _need_path(config), **strict
        ),
        "movielens_latest": lambda: _reader("movielens", "read_movielens_latest")(
            _need_path(config), **strict
        ),
        "seqrec": lambda: _reader("seqrec", "read_seqrec")(_need_path(config), **strict),
        "csv": lambda: _reader("tabular", "read_csv")(
            _need_path(config), _need_columns(config), **strict
        ),
        "parquet": lambda: _reader("tabular", "read_parquet")(
            _need_path(config), _need_columns(config), **strict
        ),
        "tfds_movielens": lambda: _reader("tfds", "load_movielens")(config.path or "100k-ratings"),
        "open_bandit": lambda: _reader("open_bandit", "read_open_bandit")(
            _need_path(config), **strict
        ),
        "ebnerd": lambda: _reader("ebnerd", "read_ebnerd")(_need_path(config), **strict),
        "ebnerd_history": lambda: _reader("ebnerd", "read_ebnerd_history")(
            _need_path(config), **strict
        ),
    }
    return readers[config.format]()


def _reader(module: str, function: str):
    """Imports a reader on first use, so optional dependencies load only when asked for."""
    return getattr(importlib.import_module(f"recjax.data.sources.{module}"), function)


def _need_path(config: DataConfig) -> str:
    if config.path is None:
        raise ValueError(
            f"Data format {config.format!r} needs DataConfig.path (--data PATH on the CLI)."
        )
    return config.path


def _need_columns(config: DataConfig) -> ColumnMapping:
    if config.columns is None:
        raise ValueError(
            f"Data format {config.format!r} needs a column mapping (DataConfig.columns)."
        )
    return config.columns
