"""Reader for the UCI Online Retail transaction log (the embedded default dataset).

Policy, applied in this order, every row accounted for in the `LoadReport`:
1. Rows without a CustomerID (anonymous checkouts) are removed: no user to attribute.
2. Rows whose StockCode is not a product (postage, fees, discounts, manual
   adjustments, bad-debt write-offs, samples, gift vouchers: `is_non_product_code`)
   are removed: they are not items anyone recommends.
3. Cancellations (InvoiceNo prefix "C", or a negative Quantity) are kept as
   `EventType.CANCELLATION` with value = |Quantity|: negative feedback, not noise.
   Every other row is an `EventType.PURCHASE` with value = Quantity.
4. Repeated lines of the same item on the same invoice are merged into one event
   (quantities summed); each merged line is counted.
Per-event features: `country`, `description`, `unit_price`, `invoice`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recjax.data.event_log import EventLog, EventType
from recjax.data.report import DataFormatError, LoadReport, OnError
from recjax.data.sources import LoadResult

# Service codes of this shop's ledger (per the UCI data's descriptions).
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "C2", "D", "M", "m", "B", "S", "CRUK", "PADS", "AMAZONFEE", "BANK CHARGES"}
)
_GIFT_VOUCHER_PREFIX = "gift_"

_SCHEMA = {
    "InvoiceNo": pa.string(),
    "StockCode": pa.string(),
    "Description": pa.string(),
    "Quantity": pa.int64(),
    "InvoiceDate": None,
    "UnitPrice": pa.float64(),
    "CustomerID": pa.float64(),
    "Country": pa.string(),
}
_REQUIRED_NON_NULL = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate")


def embedded_path() -> Path:
    """The Online Retail Parquet file that ships inside recjax."""
    return Path(str(importlib.resources.files("recjax.datasets") / "online_retail.parquet"))


def is_non_product_code(stock_codes: pa.Array) -> np.ndarray:
    """True where a StockCode is a service line rather than a product."""
    listed = pc.is_in(stock_codes, value_set=pa.array(sorted(NON_PRODUCT_CODES)))
    voucher = pc.starts_with(stock_codes, _GIFT_VOUCHER_PREFIX)
    return pc.or_(listed, voucher).to_numpy(zero_copy_only=False)


def read_online_retail(path: str | None = None, *, on_error: OnError = "raise") -> LoadResult:
    """Reads the Online Retail Parquet file (`path=None`: the embedded copy)."""
    file = Path(path) if path is not None else embedded_path()
    if file.is_dir():
        raise IsADirectoryError(f"{file} is a directory; expected the Online Retail .parquet file")
    if not file.is_file():
        raise FileNotFoundError(f"Online Retail file not found: {file}")
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as error:
        raise DataFormatError(
            str(file), None, "file", "a readable Parquet file", str(error).splitlines()[0]
        ) from None
    report = LoadReport(source=str(file), rows_read=table.num_rows)
    _check_schema(table, str(file))
    table = _drop_null_rows(table, str(file), on_error, report)

    has_customer = pc.is_valid(table["CustomerID"]).to_numpy(zero_copy_only=False)
    report.remove("no CustomerID (anonymous checkout)", int((~has_customer).sum()))
    is_product = ~is_non_product_code(table["StockCode"])
    report.remove(
        "non-product StockCode (postage, fees, discounts, vouchers)",
        int((has_customer & ~is_product).sum()),
    )
    table = table.filter(pa.array(has_customer & is_product))

    quantity = table["Quantity"].to_numpy()
    cancelled = pc.starts_with(table["InvoiceNo"], "C").to_numpy(zero_copy_only=False) | (
        quantity < 0
    )
    events = _merge_invoice_lines(table, cancelled, report)
    report.events = len(events)
    report.note(
        "cancellation events (kept, EventType.CANCELLATION)",
        int((events.event_type == EventType.CANCELLATION).sum()),
    )
    report.check_balanced()
    return LoadResult(events, report)


def _check_schema(table: pa.Table, path: str) -> None:
    for column, expected in _SCHEMA.items():
        if column not in table.column_names:
            raise DataFormatError(
                path, None, column, "a column of that name", f"columns {table.column_names}"
            )
        found = table.schema.field(column).type
        if expected is None and not pa.types.is_timestamp(found):
            raise DataFormatError(path, None, column, "a timestamp column", str(found))
        if expected is not None and found != expected:
            raise DataFormatError(path, None, column, f"type {expected}", str(found))


def _drop_null_rows(table: pa.Table, path: str, on_error: OnError, report: LoadReport) -> pa.Table:
    keep = np.ones(table.num_rows, dtype=bool)
    for column in _REQUIRED_NON_NULL:
        null = pc.is_null(table[column]).to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(null & keep)[: 1 if on_error == "raise" else None]:
            error = DataFormatError(path, int(row) + 1, column, "a value", "null")
            if on_error == "raise":
                raise error
            report.skip(error)
        keep &= ~null
    return table.filter(pa.array(keep))


def _merge_invoice_lines(table: pa.Table, cancelled: np.ndarray, report: LoadReport) -> EventLog:
    """One event per (invoice, item, purchase/cancel); quantities summed over repeated lines."""
    keyed = table.append_column("row", pa.array(np.arange(table.num_rows)))
    keyed = keyed.append_column("cancelled", pa.array(cancelled))
    grouped = keyed.group_by(["InvoiceNo", "StockCode", "cancelled"], use_threads=False).aggregate(
        [("row", "min"), ("Quantity", "sum"), ("row", "count")]
    )
    report.remove(
        "merged: repeated line of the same item on the same invoice",
        table.num_rows - grouped.num_rows,
    )
    order = np.argsort(grouped["row_min"].to_numpy())  # back to source order
    first = grouped["row_min"].to_numpy()[order]
    quantity = np.abs(grouped["Quantity_sum"].to_numpy()[order]).astype(np.float32)
    rows = keyed.take(pa.array(first))
    seconds = pc.cast(rows["InvoiceDate"], pa.timestamp("s")).cast(pa.int64()).to_numpy()
    is_cancel = cancelled[first]
    return EventLog(
        user=rows["CustomerID"].to_numpy().astype(np.int64),
        item=np.asarray(rows["StockCode"].to_numpy(zero_copy_only=False), dtype=str),
        timestamp=seconds,
        event_type=np.where(is_cancel, EventType.CANCELLATION, EventType.PURCHASE).astype(np.int8),
        value=quantity,
        features={
            "country": np.asarray(rows["Country"].to_numpy(zero_copy_only=False), dtype=str),
            "description": np.asarray(
                rows["Description"].to_numpy(zero_copy_only=False), dtype=str
            ),
            "unit_price": rows["UnitPrice"].to_numpy().astype(np.float32),
            "invoice": np.asarray(rows["InvoiceNo"].to_numpy(zero_copy_only=False), dtype=str),
        },
    )
