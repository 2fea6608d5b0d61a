"""The embedded UCI Online Retail file: every row accounted for, and strict schema errors.

Expected counts are recomputed here from the raw Parquet with numpy (independently of
the reader's helpers), and the well-known ones are also pinned as literals.
"""

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recjax.data.event_log import EventType
from recjax.data.report import DataFormatError
from recjax.data.sources.online_retail import embedded_path, read_online_retail

# Service lines of this shop's ledger, read off the raw file: every StockCode that does
# not start with five digits, with its description (DCGS... codes are real products but
# occur only on anonymous rows).
SERVICE_CODES = [
    "POST",
    "DOT",
    "C2",
    "D",
    "M",
    "m",
    "B",
    "S",
    "CRUK",
    "PADS",
    "AMAZONFEE",
    "BANK CHARGES",
]


@pytest.fixture(scope="module")
def loaded():
    return read_online_retail()


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    table = pq.read_table(embedded_path())
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


@pytest.fixture(scope="module")
def expected(raw) -> dict[str, int]:
    """The policy applied by hand to the raw columns."""
    code = raw["StockCode"].astype(str)
    invoice = raw["InvoiceNo"].astype(str)
    quantity = raw["Quantity"]
    customer = raw["CustomerID"]
    has_customer = ~np.isnan(customer)
    service = np.isin(code, SERVICE_CODES) | np.char.startswith(code, "gift_")
    kept = has_customer & ~service
    cancel = (np.char.startswith(invoice, "C") | (quantity < 0))[kept]
    _, invoice_id = np.unique(invoice[kept], return_inverse=True)
    codes, code_id = np.unique(code[kept], return_inverse=True)
    pair = invoice_id.astype(np.int64) * len(codes) + code_id
    pairs, pair_index = np.unique(pair, return_inverse=True)
    cancelled_pairs = np.zeros(len(pairs), dtype=bool)
    cancelled_pairs[pair_index[cancel]] = True
    return {
        "rows": len(code),
        "no_customer": int((~has_customer).sum()),
        "service": int((has_customer & service).sum()),
        "merged": int(kept.sum()) - len(pairs),
        "events": len(pairs),
        "cancellations": int(cancelled_pairs.sum()),
        "users": len(np.unique(customer[kept])),
        "items": len(codes),
        "purchased_quantity": int(quantity[kept][~cancel].sum()),
        "cancelled_quantity": int(-quantity[kept][cancel].sum()),
    }


def test_report_counts_match_the_raw_file(loaded, expected):
    report = loaded.report
    assert report.rows_read == expected["rows"]
    assert report.removed == {
        "no CustomerID (anonymous checkout)": expected["no_customer"],
        "non-product StockCode (postage, fees, discounts, vouchers)": expected["service"],
        "merged: repeated line of the same item on the same invoice": expected["merged"],
    }
    assert report.events == expected["events"] == len(loaded.events)
    assert report.notes == {
        "cancellation events (kept, EventType.CANCELLATION)": expected["cancellations"]
    }
    assert report.skipped == {}
    report.check_balanced()


def test_report_counts_literal(loaded):
    report = loaded.report
    assert report.rows_read == 541_909
    assert report.removed["no CustomerID (anonymous checkout)"] == 135_080
    assert report.removed["non-product StockCode (postage, fees, discounts, vouchers)"] == 1_920
    assert report.removed["merged: repeated line of the same item on the same invoice"] == 10_080
    assert report.events == 394_829
    assert report.notes["cancellation events (kept, EventType.CANCELLATION)"] == 8_475
    assert 541_909 == 394_829 + 135_080 + 1_920 + 10_080
    assert report.lines()[0].endswith("541,909 rows read, 394,829 events kept")


def test_events(loaded, expected):
    events = loaded.events
    types = events.event_type
    assert set(np.unique(types).tolist()) == {EventType.PURCHASE, EventType.CANCELLATION}
    assert int((types == EventType.CANCELLATION).sum()) == expected["cancellations"] == 8_475
    assert events.num_users() == expected["users"] == 4_363
    assert events.num_items() == expected["items"] == 3_676
    assert events.user.dtype == np.int64 and events.item.dtype.kind == "U"
    assert events.timestamp.dtype == np.int64 and events.value.dtype == np.float32
    # Merging sums quantities; values are |quantity|, so totals per type are preserved.
    np.testing.assert_equal(
        events.value[types == EventType.PURCHASE].astype(np.int64).sum(),
        expected["purchased_quantity"],
    )
    np.testing.assert_equal(
        events.value[types == EventType.CANCELLATION].astype(np.int64).sum(),
        expected["cancelled_quantity"],
    )
    assert (events.value > 0).all()
    assert sorted(events.features) == ["country", "description", "invoice", "unit_price"]
    assert np.char.startswith(
        events.features["invoice"][types == EventType.CANCELLATION], "C"
    ).all()
    assert not np.isin(events.item, SERVICE_CODES).any()


def test_timestamps_in_the_collection_period(loaded):
    timestamps = loaded.events.timestamp
    start = np.datetime64("2010-12-01T00:00", "s").astype(np.int64)
    end = np.datetime64("2011-12-10T00:00", "s").astype(np.int64)
    assert start <= timestamps.min() and timestamps.max() < end
    # First and last invoices of the file (naive local times read as seconds since epoch).
    assert timestamps.min() == np.datetime64("2010-12-01T08:26", "s").astype(np.int64)
    assert timestamps.max() == np.datetime64("2011-12-09T12:50", "s").astype(np.int64)


# --- Malformed files: a small slice of the real one, broken on purpose. ---


@pytest.fixture(scope="module")
def sample() -> pa.Table:
    return pq.read_table(embedded_path()).slice(0, 50)


def write(table: pa.Table, path: Path) -> str:
    pq.write_table(table, path)
    return str(path)


def test_sample_reads(sample, tmp_path):
    result = read_online_retail(write(sample, tmp_path / "ok.parquet"))
    assert result.report.rows_read == 50
    result.report.check_balanced()


def test_missing_column_is_named(sample, tmp_path):
    path = write(sample.drop_columns(["Country"]), tmp_path / "missing.parquet")
    with pytest.raises(DataFormatError, match=f"^{re.escape(path)}: field 'Country': ") as error:
        read_online_retail(path)
    assert error.value.field == "Country" and error.value.line is None


@pytest.mark.parametrize(
    "column, new_type, expected",
    [
        ("Quantity", pa.float64(), "type int64"),
        ("CustomerID", pa.string(), "type double"),
        ("InvoiceDate", pa.string(), "a timestamp column"),
    ],
)
def test_wrong_column_type_is_named(sample, tmp_path, column, new_type, expected):
    index = sample.column_names.index(column)
    broken = sample.set_column(index, column, pc.cast(sample[column], new_type))
    path = write(broken, tmp_path / "typed.parquet")
    with pytest.raises(DataFormatError, match=f"field '{column}': expected {expected}") as error:
        read_online_retail(path)
    assert error.value.field == column and error.value.path == path


def with_nulls(table: pa.Table, column: str, rows: list[int]) -> pa.Table:
    null = np.zeros(table.num_rows, dtype=bool)
    null[rows] = True
    values = pc.if_else(pa.array(null), pa.scalar(None, table[column].type), table[column])
    return table.set_column(table.column_names.index(column), column, values)


def test_null_invoice_date_raises_with_the_row(sample, tmp_path):
    path = write(with_nulls(sample, "InvoiceDate", [7, 20]), tmp_path / "null.parquet")
    with pytest.raises(
        DataFormatError, match=f"^{re.escape(path)}:8: field 'InvoiceDate': expected a value"
    ):
        read_online_retail(path)


def test_null_rows_are_skipped_and_counted(sample, tmp_path):
    clean = read_online_retail(write(sample, tmp_path / "clean.parquet"))
    broken = with_nulls(with_nulls(sample, "InvoiceDate", [3, 7]), "Quantity", [3])
    path = write(broken, tmp_path / "nulls.parquet")
    result = read_online_retail(path, on_error="skip")
    report = result.report
    # Row 3 has two nulls but is one row: counted once, under the first column checked.
    assert report.skipped == {"malformed Quantity": 1, "malformed InvoiceDate": 1}
    assert report.rows_read == 50
    report.check_balanced()
    assert len(report.first_skipped) == 2
    assert f"{path}:8: field 'InvoiceDate'" in report.first_skipped[1]
    # Rows 3 and 7 of the sample are single lines on their invoices: two events fewer.
    assert report.events == clean.report.events - 2


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_online_retail(str(tmp_path / "nope.parquet"))
