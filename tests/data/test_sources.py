"""Readers: counts on the real ../shared/data files, and exact errors on malformed input."""

import gzip
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recjax.data.event_log import EventType
from recjax.data.examples import ExampleConfig, RetrievalData
from recjax.data.report import DataFormatError
from recjax.data.sources import ColumnMapping, DataConfig, load_events
from recjax.data.sources.movielens import (
    read_movielens_1m,
    read_movielens_100k,
    read_movielens_latest,
)
from recjax.data.sources.seqrec import read_seqrec
from recjax.data.sources.tabular import read_csv, read_parquet
from recjax.data.sources.tfds import load_movielens

COLUMNS = ColumnMapping(user="user", item="item", timestamp="ts")


def write(path: Path, data: str | bytes) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def raises_at(path: str, line: int | None, field: str) -> pytest.RaisesExc:
    """Expects a DataFormatError naming exactly this file, line and field."""
    where = f"{path}:{line}" if line is not None else path
    return pytest.raises(DataFormatError, match=f"^{where}: field '{field}': ")


def assert_dtypes(events) -> None:
    assert events.timestamp.dtype == np.int64
    assert events.event_type.dtype == np.int8
    assert events.value.dtype == np.float32


# --- Real files (counts from SOURCE.md / the datasets' READMEs) -----------------------------


def test_movielens_100k_counts(shared_data):
    folder = shared_data("movielens-100k")
    events, report = read_movielens_100k(str(folder))
    assert (len(events), events.num_users(), events.num_items()) == (100_000, 943, 1_682)
    assert report.rows_read == report.events == 100_000 and not report.skipped
    assert events.user.dtype == events.item.dtype == np.int64
    assert_dtypes(events)
    assert set(np.unique(events.value)) == {1, 2, 3, 4, 5}
    assert np.all(events.event_type == EventType.RATING)
    # u.data line 1 is "196\t242\t3\t881250949".
    assert (events.user[0], events.item[0], events.value[0], events.timestamp[0]) == (
        196,
        242,
        3,
        881250949,
    )
    # The file itself reads the same as its folder.
    assert len(read_movielens_100k(str(folder / "u.data")).events) == 100_000


def test_movielens_1m_partial_counts(shared_data):
    path = shared_data("movielens-1m-partial/ratings_users1-2999.dat.gz")
    events, report = read_movielens_1m(str(path))
    assert (len(events), events.num_users(), events.num_items()) == (487_650, 2_999, 3_615)
    assert report.rows_read == 487_650 and not report.skipped
    ratings, counts = np.unique(events.value, return_counts=True)
    np.testing.assert_array_equal(ratings, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(counts, [27_472, 53_838, 127_216, 170_579, 108_545])
    assert (events.timestamp.min(), events.timestamp.max()) == (970_620_734, 1_046_388_675)
    first = (events.user[0], events.item[0], events.value[0], events.timestamp[0])
    last = (events.user[-1], events.item[-1], events.value[-1], events.timestamp[-1])
    assert first == (1, 1193, 5, 978300760) and last == (2999, 2046, 4, 970621145)


def test_movielens_1m_folder_needs_a_ratings_file(shared_data):
    folder = shared_data("movielens-1m-partial")  # Holds ratings_users1-2999.dat.gz only.
    with pytest.raises(FileNotFoundError, match="ratings.dat, ratings.dat.gz"):
        read_movielens_1m(str(folder))


def test_movielens_latest_small_counts(shared_data):
    events, report = read_movielens_latest(str(shared_data("movielens-latest-small")))
    assert (len(events), events.num_users(), events.num_items()) == (100_836, 610, 9_724)
    assert report.rows_read == 100_836 and not report.skipped
    assert np.all(events.event_type == EventType.RATING)
    assert (events.value.min(), events.value.max()) == (0.5, 5.0)
    # ratings.csv line 2 is "1,1,4.0,964982703".
    assert (events.user[0], events.item[0], events.value[0], events.timestamp[0]) == (
        1,
        1,
        4.0,
        964982703,
    )


@pytest.mark.parametrize(
    ("name", "users", "interactions", "items", "without_attributes"),
    [
        ("Beauty", 22_363, 198_502, 12_101, 0),
        ("Sports_and_Outdoors", 35_598, 296_337, 18_357, 0),
        ("Toys_and_Games", 19_412, 167_597, 11_924, 0),
        ("Yelp", 30_431, 316_354, 20_033, 1),  # Item 12182 lists no categories.
        ("LastFM", 1_090, 52_551, 3_646, 0),
    ],
)
def test_seqrec_counts(shared_data, name, users, interactions, items, without_attributes):
    events, report = read_seqrec(str(shared_data(f"s3rec-seqrec/{name}.txt")))
    assert (len(events), events.num_users(), events.num_items()) == (interactions, users, items)
    assert (events.item.min(), events.item.max()) == (1, items)  # Ids are 1..I.
    assert report.rows_read == interactions
    assert report.notes == {
        "lines (users)": users,
        "items without attributes": without_attributes,
    }
    np.testing.assert_array_equal(np.unique(events.user), np.arange(1, users + 1))
    assert np.all(events.event_type == EventType.INTERACTION) and np.all(events.value == 1)
    # Ordinal timestamps: 0, 1, 2, ... along each user's line.
    first_user = events.user == 1
    np.testing.assert_array_equal(events.timestamp[first_user], np.arange(first_user.sum()))


def test_parquet_online_retail_skips_rows_without_customer(shared_data):
    path = str(shared_data("uci-online-retail/online_retail.parquet"))
    columns = ColumnMapping(
        user="CustomerID", item="StockCode", timestamp="InvoiceDate", value="Quantity"
    )
    events, report = read_parquet(path, columns, on_error="skip")
    assert (len(events), events.num_users(), events.num_items()) == (406_829, 4_372, 3_684)
    assert report.rows_read == 541_909 and report.skipped == {"malformed CustomerID": 135_080}
    assert events.user.dtype == np.int64 and events.item.dtype.kind == "U"
    # 2010-12-01 08:26 .. 2011-12-09 12:50, read as UTC.
    assert (events.timestamp.min(), events.timestamp.max()) == (1291191960, 1323435000)
    with raises_at(path, 623, "CustomerID"):  # The first row with no CustomerID.
        read_parquet(path, columns)


def test_load_events_dispatches_to_the_readers(shared_data):
    path = str(shared_data("movielens-100k/u.data"))
    events, _ = load_events(DataConfig(format="movielens_100k", path=path))
    assert len(events) == 100_000


# --- Delimited text: exact errors -----------------------------------------------------------

GOOD_100K = "1\t10\t5\t100\n2\t20\t4\t200\n"


@pytest.mark.parametrize(
    ("data", "line", "field", "found"),
    [
        (GOOD_100K + "3\t30\t3\n", 3, "line", "3\t30\t3"),  # Wrong field count.
        (GOOD_100K + "3\t30\t3\t300\t9\n", 3, "line", "3\t30\t3\t300\t9"),
        ("1\t10\t5\t100\n\n2\t20\t4\t200\n", 2, "line", ""),  # Empty line.
        (GOOD_100K + "u3\t30\t3\t300\n", 3, "user", "u3"),  # Non-numeric id.
        (GOOD_100K + "3\t3.5\t3\t300\n", 3, "item", "3.5"),
        (GOOD_100K + "3\t30\tfive\t300\n", 3, "rating", "five"),
        (GOOD_100K + "3\t30\tnan\t300\n", 3, "rating", "nan"),
        (GOOD_100K + "3\t30\t3\t2020-01-01\n", 3, "timestamp", "2020-01-01"),  # Non-numeric time.
        (GOOD_100K + "3\t30\t3\t99999999999999999999\n", 3, "timestamp", "99999999999999999999"),
        (b"1\t10\t5\t100\n2\t2\xff0\t4\t200\n", 2, "encoding", "bytes 0xff"),  # Bad UTF-8 byte.
        (b"1\t10\t5\t100\n2\t20\t4\t2\xe2\x82\n", 2, "encoding", "bytes 0xe2 0x82"),
    ],
)
def test_100k_errors_name_file_line_and_field(tmp_path, data, line, field, found):
    path = write(tmp_path / "u.data", data)
    with raises_at(path, line, field) as caught:
        read_movielens_100k(path)
    assert (caught.value.line, caught.value.field, caught.value.found) == (line, field, found)


def test_first_bad_line_wins_whatever_the_check(tmp_path):
    # Line 2 has a bad timestamp, line 3 a bad byte, line 4 a missing field.
    path = write(tmp_path / "u.data", b"1\t1\t1\t1\n2\t2\t2\tx\n3\t\xff\t3\t3\n4\t4\t4\n")
    with raises_at(path, 2, "timestamp"):
        read_movielens_100k(path)


def test_skip_counts_every_malformed_line_and_keeps_the_rest(tmp_path):
    data = (
        b"1\t10\t5\t100\r\n"  # CRLF is fine.
        b"\n"  # 2: empty.
        b"2\t20\t4\n"  # 3: 3 fields.
        b"x\t20\t4\t200\n"  # 4: bad user.
        b"3\t30\t3\t300\n"
        b"4\t40\t2\t\xff\n"  # 6: bad byte (and so a bad timestamp too: counted once).
        b"5\t50\t1\tt\n"  # 7: bad timestamp.
        b"6\t60\t1\t600"
    )  # No final newline.
    path = write(tmp_path / "u.data", data)
    events, report = read_movielens_100k(path, on_error="skip")
    np.testing.assert_array_equal(events.user, [1, 3, 6])
    np.testing.assert_array_equal(events.timestamp, [100, 300, 600])
    np.testing.assert_array_equal(events.value, [5, 3, 1])
    assert report.rows_read == 8 and report.events == 3
    assert report.skipped == {
        "malformed line": 2,
        "malformed user": 1,
        "malformed encoding": 1,
        "malformed timestamp": 1,
    }
    assert [m.split(": field")[0] for m in report.first_skipped] == [
        f"{path}:{n}" for n in (2, 3, 4, 6, 7)
    ]


def test_skip_keeps_five_messages_but_counts_all(tmp_path):
    rows = [f"{u}\t1\t1\t{'x' if u % 2 else 1}" for u in range(1, 21)]
    path = write(tmp_path / "u.data", "\n".join(rows) + "\n")
    events, report = read_movielens_100k(path, on_error="skip")
    assert len(events) == 10 and report.skipped == {"malformed timestamp": 10}
    assert len(report.first_skipped) == 5 and report.first_skipped[0].startswith(f"{path}:1:")
    report.check_balanced()


def test_1m_reads_gzip_and_names_its_lines(tmp_path):
    path = write(tmp_path / "ratings.dat.gz", gzip.compress(b"1::2::3::4\n5::6::7::8::9\n"))
    with raises_at(path, 2, "line") as caught:
        read_movielens_1m(str(tmp_path))  # The folder finds ratings.dat.gz.
    assert caught.value.expected == "4 '::'-separated fields"


def test_on_error_must_be_raise_or_skip(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        read_movielens_100k(write(tmp_path / "u.data", GOOD_100K), on_error="ignore")


# --- S3-Rec sequences -----------------------------------------------------------------------


def test_seqrec_positions_and_malformed_lines(tmp_path):
    path = write(tmp_path / "Tiny.txt", "1 7 8\n2 9 x 4\n3\n\n4 5\n")
    with raises_at(path, 2, "item"):
        read_seqrec(path)
    events, report = read_seqrec(path, on_error="skip")
    np.testing.assert_array_equal(events.user, [1, 1, 4])
    np.testing.assert_array_equal(events.item, [7, 8, 5])
    np.testing.assert_array_equal(events.timestamp, [0, 1, 0])
    # Rows are (user, item) entries: 2 + 3 + 1 (user only) + 1 (empty) + 1.
    assert report.rows_read == 8 and report.events == 3
    assert report.skipped == {"malformed item": 3, "malformed line": 2}


def test_seqrec_attributes_follow_each_event_and_missing_items_are_counted(tmp_path):
    path = write(tmp_path / "Tiny.txt", "1 7 8\n2 8 9\n")
    write(tmp_path / "Tiny_item2attributes.json", '{"7": [3, 1], "8": [2], "10": [5]}')
    events, report = read_seqrec(path)
    np.testing.assert_array_equal(events.features["attributes"], ["3 1", "2", "2", ""])
    assert report.notes["items without attributes"] == 1  # Item 9.


def test_beauty_attributes_become_item_tokens(shared_data):
    events, _ = read_seqrec(str(shared_data("s3rec-seqrec/Beauty.txt")))
    data = RetrievalData.build(
        events, ExampleConfig(text_feature="attributes", context_feature=None)
    )
    # Item 4 has attributes [1, 2, 3] in Beauty_item2attributes.json: three distinct tokens.
    tokens = data.item_tokens[data.items.lookup(np.array([4]))[0]]
    assert np.count_nonzero(tokens) == 3 and len(set(tokens[:3])) == 3


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ('{"7": [1,\n', 2, "json"),
        ("[1, 2]", None, "json"),
        ('{"x": [1]}', None, "item id"),
        ('{"--5": [1]}', None, "item id"),
        ('{"7": [1, "a"]}', None, "attributes of item 7"),
        ('{"7": 3}', None, "attributes of item 7"),
    ],
)
def test_seqrec_malformed_attributes_name_file_and_field(tmp_path, text, line, field):
    path = write(tmp_path / "Tiny.txt", "1 7\n")
    attributes = write(tmp_path / "Tiny_item2attributes.json", text)
    with raises_at(attributes, line, field):
        read_seqrec(path)


# --- CSV ------------------------------------------------------------------------------------


def test_csv_missing_column_names_the_columns_found(tmp_path):
    path = write(tmp_path / "e.csv", "user,item,time\n1,2,3\n")
    with raises_at(path, 1, "ts") as caught:
        read_csv(path, COLUMNS)
    assert caught.value.found == "columns user, item, time"


def test_csv_line_numbers_count_header_and_empty_lines(tmp_path):
    path = write(
        tmp_path / "e.csv",
        (
            "user,item,ts\n"
            "1,10,100\n"
            "\n"  # 3: empty.
            "2,20\n"  # 4: 2 fields.
            "3,30,300,extra\n"  # 5: 4 fields.
            "4,,400\n"  # 6: empty item.
            '"5","a, b",500\n'  # Quoted fields.
            "6,60,soon\n"  # 8: bad timestamp.
        ),
    )
    with raises_at(path, 3, "line") as caught:
        read_csv(path, COLUMNS)
    assert caught.value.expected == "3 comma-separated fields"
    events, report = read_csv(path, COLUMNS, on_error="skip")
    np.testing.assert_array_equal(events.user, [1, 5])
    np.testing.assert_array_equal(events.item, ["10", "a, b"])  # Not all integers: text ids.
    assert events.item.dtype.kind == "U" and events.user.dtype == np.int64
    assert report.rows_read == 7 and report.events == 2
    assert report.skipped == {"malformed line": 3, "malformed item": 1, "malformed ts": 1}
    assert [m.split(": field")[0] for m in report.first_skipped] == [
        f"{path}:{n}" for n in (3, 4, 5, 6, 8)
    ]


def test_csv_timestamps_integer_or_iso(tmp_path):
    path = write(
        tmp_path / "e.csv",
        (
            "user,item,ts\n"
            "1,1,1577836800\n"
            "1,2,2020-01-01T00:00:00Z\n"
            "1,3,2020-01-01 01:00:00.75+01:00\n"
            "1,4,2020-01-01\n"
            "1,5,2021-02-30\n"  # 6: no such day.
            "1,6,yesterday\n"  # 7.
        ),
    )
    with raises_at(path, 6, "ts"):
        read_csv(path, COLUMNS)
    events, report = read_csv(path, COLUMNS, on_error="skip")
    np.testing.assert_array_equal(events.timestamp, [1577836800] * 4)
    assert report.skipped == {"malformed ts": 2}


def test_csv_event_types_values_and_features(tmp_path):
    path = write(
        tmp_path / "e.csv",
        (
            "user,item,ts,kind,qty,price,shop\n"
            "u1,1,10,purchase,2,1.5,a\n"
            "u2,2,20,Rating,4.5,2,b\n"
            "u3,3,30,3,1,3,c\n"
            "u4,4,40,click,1,4,d\n"  # 5: not an EventType.
            "u5,5,50,7,1,5,e\n"  # 6: not an EventType value.
        ),
    )
    columns = ColumnMapping(
        user="user",
        item="item",
        timestamp="ts",
        event_type="kind",
        value="qty",
        features=("price", "shop"),
    )
    with raises_at(path, 5, "kind") as caught:
        read_csv(path, columns)
    assert caught.value.found == "click"
    events, report = read_csv(path, columns, on_error="skip")
    np.testing.assert_array_equal(events.user, ["u1", "u2", "u3"])
    np.testing.assert_array_equal(
        events.event_type, [EventType.PURCHASE, EventType.RATING, EventType.CANCELLATION]
    )
    np.testing.assert_array_equal(events.value, [2, 4.5, 1])
    assert events.features["price"].dtype == np.float64
    assert events.features["shop"].dtype.kind == "U"
    assert report.skipped == {"malformed kind": 2}


def test_csv_defaults_and_bad_encoding(tmp_path):
    path = write(tmp_path / "e.csv", b"user,item,ts\n1,2,3\n4,\xe9,6\n")
    with raises_at(path, 3, "encoding"):
        read_csv(path, COLUMNS)
    events, report = read_csv(path, COLUMNS, on_error="skip")
    assert len(events) == 1 and report.skipped == {"malformed encoding": 1}
    assert events.event_type[0] == EventType.INTERACTION and events.value[0] == 1.0
    assert_dtypes(events)


def test_movielens_latest_reports_csv_errors(tmp_path):
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,x,4\n")
    with raises_at(path, 2, "rating"):
        read_movielens_latest(str(tmp_path))


# --- Parquet --------------------------------------------------------------------------------


def test_parquet_typed_columns_and_null_rows(tmp_path):
    path = str(tmp_path / "e.parquet")
    pq.write_table(
        pa.table(
            {
                "user": pa.array([1, 2, None, 4], pa.int32()),
                "item": ["a", "b", "c", None],
                "ts": pa.array([1_000, 2_500, 3_000, 4_000], pa.timestamp("ms", tz="UTC")),
                "kind": ["rating", "INTERACTION", "rating", "rating"],
            }
        ),
        path,
    )
    columns = ColumnMapping(user="user", item="item", timestamp="ts", event_type="kind")
    with raises_at(path, 3, "user"):
        read_parquet(path, columns)
    events, report = read_parquet(path, columns, on_error="skip")
    np.testing.assert_array_equal(events.user, [1, 2])
    np.testing.assert_array_equal(events.timestamp, [1, 2])
    np.testing.assert_array_equal(events.event_type, [EventType.RATING, EventType.INTERACTION])
    assert report.skipped == {"malformed user": 1, "malformed item": 1}
    with raises_at(path, None, "when"):
        read_parquet(path, ColumnMapping(user="user", item="item", timestamp="when"))


# --- TFDS -----------------------------------------------------------------------------------


def test_tfds_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # Makes the import fail.
    with pytest.raises(ImportError, match=r"pip install 'recjax\[tfds\]'"):
        load_movielens()


def test_tfds_batch_becomes_events(monkeypatch):
    batch = {
        "user_id": np.array([b"196", b"186"], object),
        "movie_id": np.array([b"242", b"302"], object),
        "user_rating": np.array([3.0, 4.0], np.float32),
        "timestamp": np.array([881250949, 891717742], np.int64),
    }
    calls = []

    def fake_load(name, split, batch_size):
        calls.append((name, split, batch_size))
        return batch

    fake = types.SimpleNamespace(load=fake_load, as_numpy=lambda tree: tree)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    events, report = load_movielens("1m-ratings")
    assert calls == [("movielens/1m-ratings", "train", -1)]
    np.testing.assert_array_equal(events.user, [196, 186])
    np.testing.assert_array_equal(events.item, [242, 302])
    assert events.user.dtype == np.int64 and report.rows_read == report.events == 2
    assert np.all(events.event_type == EventType.RATING)
