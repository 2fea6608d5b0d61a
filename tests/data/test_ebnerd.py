import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recjax.data.report import DataFormatError
from recjax.data.sources import DataConfig, load_events
from recjax.data.sources.ebnerd import read_ebnerd, read_ebnerd_history


def test_reads_real_behaviors_and_history(shared_data):
    folder = str(shared_data("ebnerd-test-sample"))
    events, report = load_events(DataConfig(format="ebnerd", path=folder))
    # SOURCE.md: 1,046 impressions, clicks 1 per row but 2 in one row.
    assert report.rows_read == len(events) == 10_848
    assert events.value.sum() == 1_047
    assert len(np.unique(events.features["impression_id"])) == 1_046
    dwell = events.features["dwell"]
    assert np.isnan(dwell[events.value == 0]).all()  # No dwell without a click.
    assert np.isfinite(dwell[events.value == 1]).sum() == 1_019  # 28 clicks lack next_read_time.
    history, report = load_events(DataConfig(format="ebnerd_history", path=folder))
    assert len(history) == report.rows_read == 8_303
    assert history.num_users() == 44
    assert (history.value >= 0).all()


def _broken_copy(shared_data, tmp_path, change):
    table = pq.read_table(shared_data("ebnerd-test-sample") / "behaviors.parquet").slice(0, 5)
    rows = table.to_pylist()
    change(rows)
    file = tmp_path / "behaviors.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), file)
    return file, table


def test_clicked_article_not_in_view_is_an_error(shared_data, tmp_path):
    def change(rows):
        rows[1]["article_ids_clicked"] = [123]

    file, table = _broken_copy(shared_data, tmp_path, change)
    with pytest.raises(DataFormatError) as raised:
        read_ebnerd(file)
    error = raised.value
    assert (error.path, error.line, error.field, error.found) == (
        str(file),
        2,
        "article_ids_clicked",
        "[123]",
    )
    events, report = read_ebnerd(file, on_error="skip")
    inview = [len(x) for x in table["article_ids_inview"].to_pylist()]
    assert report.skipped == {"malformed article_ids_clicked": inview[1]}
    assert len(events) == sum(inview) - inview[1]


def test_negative_dwell_and_null_user_are_errors(shared_data, tmp_path):
    def change(rows):
        rows[3]["next_read_time"] = -4.0

    file, _ = _broken_copy(shared_data, tmp_path, change)
    with pytest.raises(DataFormatError, match=r"behaviors.parquet:4: field 'next_read_time'"):
        read_ebnerd(file)

    def null_user(rows):
        rows[0]["user_id"] = None

    file, _ = _broken_copy(shared_data, tmp_path, null_user)
    with pytest.raises(DataFormatError, match=r":1: field 'user_id': expected a value"):
        read_ebnerd(file)


def test_missing_column_and_misaligned_history(shared_data, tmp_path):
    table = pq.read_table(shared_data("ebnerd-test-sample") / "behaviors.parquet")
    pq.write_table(table.drop_columns(["article_ids_clicked"]), tmp_path / "behaviors.parquet")
    with pytest.raises(DataFormatError, match="article_ids_clicked"):
        read_ebnerd(tmp_path)
    history = pq.read_table(shared_data("ebnerd-test-sample") / "history.parquet").slice(0, 3)
    rows = history.to_pylist()
    rows[2]["read_time_fixed"] = rows[2]["read_time_fixed"][:-1]
    pq.write_table(pa.Table.from_pylist(rows, schema=history.schema), tmp_path / "history.parquet")
    with pytest.raises(DataFormatError, match=r"history.parquet:3: field 'read_time_fixed'"):
        read_ebnerd_history(tmp_path)
    events, report = read_ebnerd_history(tmp_path, on_error="skip")
    kept = sum(len(r["article_id_fixed"]) for r in rows[:2])
    assert len(events) == kept
    assert report.rows_read == kept + len(rows[2]["article_id_fixed"])
