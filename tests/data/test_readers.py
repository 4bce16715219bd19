"""Readers: every format round-trips; every bad input names file, line and column."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforget.data import DataError, Interactions, read_interactions, read_movielens
from recforget.data.readers import detect_format, integer_ids

ROWS = [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742), (196, 377, 1.0, 878887116)]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def check_rows(data: Interactions, rows=ROWS, timestamps: bool = True) -> None:
    frame = data.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
    want = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    want = want.sort_values(["user", "item"]).reset_index(drop=True)
    assert frame["user"].tolist() == want["user"].tolist()
    assert frame["item"].tolist() == want["item"].tolist()
    np.testing.assert_array_equal(frame["rating"], want["rating"])
    if timestamps:
        np.testing.assert_array_equal(frame["timestamp"], want["timestamp"])
    else:
        assert data.timestamps is None


def grouplens(sep: str, rows=ROWS) -> str:
    return "".join(sep.join(str(int(v)) for v in r) + "\n" for r in rows)


def csv_text(header: str, rows=ROWS, sep: str = ",") -> str:
    return header + "\n" + "".join(sep.join(str(v) for v in r) + "\n" for r in rows)


# ---------------------------------------------------------------------- round trips


def test_u_data(tmp_path):
    path = write(tmp_path, "ml-100k/u.data", grouplens("\t"))
    assert detect_format(path) == "u.data"
    data = read_interactions(path)
    check_rows(data)
    assert data.users.is_integer and data.items.is_integer
    check_rows(read_movielens(tmp_path))  # directory with a sub-directory
    check_rows(read_movielens(tmp_path / "ml-100k"))


def test_ratings_dat(tmp_path):
    path = write(tmp_path, "ratings.dat", grouplens("::").replace("\n", "\r\n"))
    assert detect_format(path) == "dat"
    check_rows(read_interactions(path))
    check_rows(read_movielens(tmp_path))


def test_movielens_ratings_csv(tmp_path):
    rows = [(1, 1, 4.0, 964982703), (1, 3, 4.5, 964981247), (2, 1, 0.5, 964982224)]
    path = write(tmp_path, "ratings.csv", csv_text("userId,movieId,rating,timestamp", rows))
    data = read_movielens(path)
    check_rows(data, rows)
    assert data.users.is_integer and data.items.is_integer


def test_generic_csv_and_tsv(tmp_path):
    check_rows(read_interactions(write(tmp_path, "a.csv", csv_text("user,item,rating,timestamp"))))
    tsv = write(tmp_path, "a.tsv", csv_text("timestamp\tuser\titem\trating", _reorder(), "\t"))
    check_rows(read_interactions(tsv))
    semi = write(tmp_path, "a.txt", csv_text("user;item;rating;timestamp", sep=";"))
    check_rows(read_interactions(semi, format="csv", sep=";"))


def _reorder():
    return [(t, u, i, r) for u, i, r, t in ROWS]


def test_custom_columns_and_implicit(tmp_path):
    path = write(tmp_path, "a.csv", "uid,song,plays\nx,s1,3\ny,s1,1\nx,s2,5\n")
    data = read_interactions(path, user_col="uid", item_col="song", rating_col="plays")
    assert list(data.users.ids) == ["x", "y"]
    assert data.nnz == 3 and data.timestamps is None
    implicit = read_interactions(path, user_col="uid", item_col="song")
    np.testing.assert_array_equal(implicit.values, 1.0)


def test_string_ids_stay_strings(tmp_path):
    path = write(tmp_path, "a.csv", "user,item,rating\n007,1,2\n7,1,3\n")
    data = read_interactions(path)
    assert sorted(data.users.ids.tolist()) == ["007", "7"]  # not merged into the int 7
    assert data.items.is_integer


def test_recbole_atomic(tmp_path):
    text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + grouplens("\t")
    check_rows(read_interactions(write(tmp_path, "x.inter", text)))


def test_titles_with_quotes_in_atomic(tmp_path):
    text = 'user_id:token\titem_id:token\n1\t"Great" Movie (1990)\n1\tOther, The\n'
    data = read_interactions(write(tmp_path, "x.inter", text))
    assert sorted(data.items.ids.tolist()) == ['"Great" Movie (1990)', "Other, The"]


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(ROWS, columns=["user", "item", "rating", "timestamp"])
    path = tmp_path / "a.parquet"
    frame.to_parquet(path)
    check_rows(read_interactions(path))
    frame.loc[1, "rating"] = np.inf
    frame.to_parquet(path)
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert (err.value.line, err.value.column) == (2, "rating")  # row 2


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match="pyarrow"):
        read_interactions(path)


def test_duplicates_policy(tmp_path):
    path = write(tmp_path, "a.csv", "user,item,rating\n1,2,3\n1,3,4\n1,2,5\n")
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert err.value.line == 4 and "line 2" in str(err.value)
    assert read_interactions(path, duplicates="max").values.tolist() == [5.0, 4.0]
    assert read_interactions(path, duplicates="first").values.tolist() == [3.0, 4.0]


def test_trailing_blank_lines_are_fine(tmp_path):
    check_rows(read_interactions(write(tmp_path, "u.data", grouplens("\t") + "\n\n")))


def test_integer_ids():
    assert integer_ids(pd.Series(["1", "-2", "30"])).dtype == np.int64
    for text in (["01", "2"], ["+1"], ["1.0"], ["a"], ["99999999999999999999"]):
        assert integer_ids(pd.Series(text)).dtype != np.int64


# ---------------------------------------------------------------------- bad input


def bad(path: Path, **kw) -> DataError:
    with pytest.raises(DataError) as err:
        read_interactions(path, **kw)
    assert err.value.file == str(path)
    assert str(path) in str(err.value)
    return err.value


@pytest.mark.parametrize(
    ("name", "text", "line", "column"),
    [
        # headered: the first data row is line 2
        ("a.csv", "user,item,rating\n1,2,3\n1,3,x\n", 3, "rating"),
        ("a.csv", "user,item,rating\n1,2,3\n1,3,nan\n", 3, "rating"),
        ("a.csv", "user,item,rating\n1,2,inf\n", 2, "rating"),
        ("a.csv", "user,item,rating\n1,2,3\n1,3,\n", 3, "rating"),
        ("a.csv", "user,item,rating\n1,2,3\n,3,4\n", 3, "user"),
        ("a.csv", "user,item,rating,timestamp\n1,2,3,5\n1,3,4,soon\n", 3, "timestamp"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1,3,-Infinity,4\n", 3, "rating"),
        (
            "x.inter",
            "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\tbad\n",
            3,
            "rating",
        ),
        # headerless: the first data row is line 1
        ("u.data", "1\t2\t3\t4\n1\t3\tNaN\t4\n", 2, "rating"),
        ("u.data", "1\t2\tx\t4\n", 1, "rating"),
        ("ratings.dat", "1::2::3::4\n1::3::3::4\n2::3::five::4\n", 3, "rating"),
        ("ratings.dat", "1::2::3::4\n1::3::3::x\n", 2, "timestamp"),
        ("ratings.dat", "1::2::3::4\n1::3::3\n", 2, "timestamp"),  # short row
    ],
)
def test_bad_value_names_line_and_column(tmp_path, name, text, line, column):
    err = bad(write(tmp_path, name, text))
    assert (err.line, err.column) == (line, column)
    assert f"line {line}" in str(err) and repr(column) in str(err)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("a.csv", "user,item,rating\n1,2,3\n1,3,4,5\n", 3),
        ("a.csv", "user,item,rating\n1,2,3,9\n", 2),
        ("a.csv", "user,item,rating\n1,2,3\n\n1,3,4,5\n", 4),
        ("u.data", "1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2),
        ("u.data", "1\t2\t3\t4\t5\n1\t2\t3\t4\n", 1),
        ("u.data", "1\t2\t3\n", 1),
        ("ratings.dat", "1::2::3::4\n1::3::3::4\n1::4::3::4::9\n", 3),
        ("ratings.dat", "1::2::3::4::0\n", 1),
    ],
)
def test_wrong_number_of_fields(tmp_path, name, text, line):
    err = bad(write(tmp_path, name, text))
    assert err.line == line
    assert "fields" in str(err)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("a.csv", "user,item,rating\n1,2,3\n\n1,3,4\n", 3),
        ("u.data", "1\t2\t3\t4\n\n1\t3\t3\t4\n", 2),
        ("ratings.dat", "1::2::3::4\n1::5::3::4\n\n1::3::3::4\n", 3),
        ("ratings.dat", "1::2::3::4\r\n\r\n1::3::3::4\r\n", 2),
    ],
)
def test_blank_line_inside_data(tmp_path, name, text, line):
    err = bad(write(tmp_path, name, text))
    assert err.line == line and "blank" in str(err)


@pytest.mark.parametrize(
    "text", ["", "user,item,rating\n", "\n\n"], ids=["empty", "header-only", "blank"]
)
def test_empty_file(tmp_path, text):
    err = bad(write(tmp_path, "a.csv", text))
    assert "empty" in str(err) or "no interactions" in str(err) or "no data" in str(err)


def test_empty_grouplens_file(tmp_path):
    assert "empty" in str(bad(write(tmp_path, "u.data", "")))


def test_missing_columns_are_listed(tmp_path):
    path = write(tmp_path, "a.csv", "uid,movie,stars\n1,2,3\n")
    err = bad(path)
    assert err.line == 1 and "'uid'" in str(err) and "'movie'" in str(err)
    err = bad(path, user_col="uid", item_col="movie", rating_col="rating")
    assert "rating" in str(err) and "'stars'" in str(err)
    err = bad(path, user_col="uid", item_col="movie", timestamp_col="ts")
    assert "ts" in str(err)


def test_duplicate_header_names(tmp_path):
    assert bad(write(tmp_path, "a.csv", "user,item,user\n1,2,3\n")).line == 1


def test_bad_encoding_in_dat(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::2::3::4\n1::\xff::3::4\n")
    assert bad(path).line == 2


def test_unknown_format(tmp_path):
    path = write(tmp_path, "ratings.json", "{}")
    with pytest.raises(DataError, match="format"):
        read_interactions(path)
    dat = write(tmp_path, "x.dat", "1,2,3\n")
    with pytest.raises(DataError, match="::"):
        read_interactions(dat)
    with pytest.raises(ValueError, match="format"):
        read_interactions(dat, format="xml")
    with pytest.raises(FileNotFoundError):
        read_interactions(tmp_path / "nope.csv")


def test_read_movielens_directory_errors(tmp_path):
    write(tmp_path, "readme.txt", "hi")
    with pytest.raises(DataError, match=r"readme\.txt"):
        read_movielens(tmp_path)
    write(tmp_path, "a/u.data", grouplens("\t"))
    write(tmp_path, "b/ratings.dat", grouplens("::"))
    with pytest.raises(DataError, match="several"):
        read_movielens(tmp_path)
