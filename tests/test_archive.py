"""engine.data.archive: reading, validation and error messages of the three Kaggle CSVs."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import schema
from engine.data.archive import Archive, ArchiveError, load_archive, spec

SYMBOLS = ("AAA", "BBB", "CCC")
N_DAYS = 30
LEADING_EMPTY = 5  # CCC's first rows are the Kaggle pre-listing placeholders
STOCKS_HEADER = ",".join(schema.STOCKS_COLUMNS)
COMPANIES_HEADER = ",".join(schema.COMPANIES_COLUMNS)
INDEX_HEADER = ",".join(schema.INDEX_COLUMNS)


def business_days(n: int = N_DAYS, start: date = date(2020, 1, 1)) -> list[str]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d.isoformat())
        d += timedelta(days=1)
    return days


def stock_rows() -> list[str]:
    """3 symbols x 30 days, sorted by (symbol, date); data row r is file line r + 2."""
    rows = []
    for k, symbol in enumerate(SYMBOLS):
        for i, day in enumerate(business_days()):
            if symbol == "CCC" and i < LEADING_EMPTY:
                rows.append(f"{day},{symbol},,,,,,")
                continue
            close = 10.0 * (k + 1) + 0.1 * i
            rows.append(
                f"{day},{symbol},{close * 0.9:.4f},{close:.4f},{close + 1:.4f},"
                f"{close - 1:.4f},{close + 0.5:.4f},{1000.0 + i}"
            )
    return rows


def company_rows(symbols: tuple[str, ...] = SYMBOLS) -> list[str]:
    """One row per symbol; the quoted summary holds a comma, quotes and a newline (2 lines)."""
    return [
        f'NMS,{sym},"{sym} Inc.","{sym} Incorporated",Technology,Software,'
        f"{100.0 + i},{1e9 * (i + 1)},{1e8 if i != 1 else ''},0.05,Austin,TX,United States,"
        f'{1000 + i},"Makes things, ""good"" ones.\nSecond line.",{0.01 * (i + 1)}'
        for i, sym in enumerate(symbols)
    ]


def index_rows() -> list[str]:
    return [f"{day},{3000 + 5.5 * i:.2f}" for i, day in enumerate(business_days())]


def write_archive(
    folder: Path,
    stocks: list[str] | None = None,
    companies: list[str] | None = None,
    index: list[str] | None = None,
    *,
    headers: dict[str, str] | None = None,
    newline: str = "\n",
    bom: bool = False,
) -> Path:
    """Write the three CSVs (header + rows) into ``folder``; None means the valid default."""
    folder.mkdir(parents=True, exist_ok=True)
    headers = headers or {}
    contents = {
        schema.STOCKS_FILE: (STOCKS_HEADER, stock_rows() if stocks is None else stocks),
        schema.COMPANIES_FILE: (
            COMPANIES_HEADER,
            company_rows() if companies is None else companies,
        ),
        schema.INDEX_FILE: (INDEX_HEADER, index_rows() if index is None else index),
    }
    for name, (header, rows) in contents.items():
        text = newline.join([headers.get(name, header), *rows]) + newline
        data = ("\ufeff" if bom else "") + text
        (folder / name).write_bytes(data.encode())
    return folder


def cache_files(cache: Path) -> list[Path]:
    """Parquet files and manifests under ``cache`` (empty when nothing was cached)."""
    return [*cache.rglob("*.parquet"), *cache.rglob("manifest.json")]


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return write_archive(tmp_path / "data")


# --- valid input ----------------------------------------------------------------------------
def test_valid_archive_has_cache_schemas_and_drops_placeholders(archive_dir, tmp_path):
    archive = load_archive(archive_dir, tmp_path / "cache")
    assert isinstance(archive, Archive)
    prices = archive.prices.collect()
    assert prices.schema == spec.PRICES_SCHEMA
    assert archive.index.collect_schema() == spec.INDEX_SCHEMA
    assert archive.companies.schema == spec.COMPANIES_SCHEMA
    assert prices.height == 3 * N_DAYS - LEADING_EMPTY
    assert prices.filter(pl.col("symbol") == "CCC").height == N_DAYS - LEADING_EMPTY
    assert prices.null_count().sum_horizontal().item() == 0
    assert prices.equals(prices.sort("symbol", "date"))
    assert archive.index.collect().height == N_DAYS
    assert archive.companies["symbol"].to_list() == list(SYMBOLS)
    assert archive.companies["longbusinesssummary"][0] == 'Makes things, "good" ones.\nSecond line.'
    assert archive.warnings == ()
    assert archive.source is schema.DataSource.REAL
    assert sorted(p.name for p in archive.cache_dir.iterdir()) == [
        "companies.parquet",
        "index.parquet",
        "manifest.json",
        "prices.parquet",
    ]


def test_scans_read_the_parquet_cache_not_the_csv(archive_dir, tmp_path):
    archive = load_archive(archive_dir, tmp_path / "cache")
    for name in schema.ARCHIVE_FILES:
        (archive_dir / name).unlink()
    assert archive.prices.collect().height == 3 * N_DAYS - LEADING_EMPTY
    assert archive.index.collect().height == N_DAYS


def test_placeholder_rows_anywhere_are_dropped_and_input_order_does_not_matter(tmp_path):
    rows = stock_rows()
    halted = rows[40].split(",")[:2]  # a BBB day in the middle of its history
    rows[40] = ",".join([*halted, "", "", "", "", "", ""])
    shuffled = rows[::-1]
    a = load_archive(write_archive(tmp_path / "a", rows), tmp_path / "cache")
    b = load_archive(write_archive(tmp_path / "b", shuffled), tmp_path / "cache")
    assert a.fingerprint != b.fingerprint
    assert a.prices.collect().height == 3 * N_DAYS - LEADING_EMPTY - 1
    assert a.prices.collect().equals(b.prices.collect())


def test_bom_and_crlf_are_accepted(archive_dir, tmp_path):
    plain = load_archive(archive_dir, tmp_path / "cache")
    windows = load_archive(
        write_archive(tmp_path / "win", newline="\r\n", bom=True), tmp_path / "cache"
    )
    assert windows.fingerprint != plain.fingerprint
    assert windows.prices.collect().equals(plain.prices.collect())
    assert windows.index.collect().equals(plain.index.collect())
    summary = windows.companies["longbusinesssummary"][0]
    assert windows.companies.drop("longbusinesssummary").equals(
        plain.companies.drop("longbusinesssummary")
    )
    assert summary.replace("\r\n", "\n") == plain.companies["longbusinesssummary"][0]


def test_blank_lines_are_ignored(tmp_path):
    rows = stock_rows()
    rows.insert(10, "")
    archive = load_archive(write_archive(tmp_path / "d", [*rows, ""]), tmp_path / "cache")
    assert archive.prices.collect().height == 3 * N_DAYS - LEADING_EMPTY


def test_zero_volume_is_allowed(tmp_path):
    rows = stock_rows()
    rows[3] = _set_field(rows[3], "Volume", "0")
    archive = load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert archive.prices.collect()["volume"].min() == 0.0


def test_symbol_without_company_row_is_a_warning(tmp_path, caplog):
    folder = write_archive(tmp_path / "d", companies=company_rows(("AAA", "BBB")))
    with caplog.at_level(logging.WARNING, logger="engine.data.archive"):
        archive = load_archive(folder, tmp_path / "cache")
    assert len(archive.warnings) == 1
    assert "CCC" in archive.warnings[0] and schema.COMPANIES_FILE in archive.warnings[0]
    assert any("CCC" in r.getMessage() for r in caplog.records)
    again = load_archive(folder, tmp_path / "cache")  # warm: the warning comes from the manifest
    assert again.warnings == archive.warnings


def test_source_is_recorded(archive_dir, tmp_path):
    archive = load_archive(archive_dir, tmp_path / "cache", schema.DataSource.SYNTHETIC)
    assert archive.source is schema.DataSource.SYNTHETIC


# --- missing and empty files ------------------------------------------------------------------
def test_missing_file_is_named_with_its_folder(archive_dir, tmp_path):
    (archive_dir / schema.INDEX_FILE).unlink()
    with pytest.raises(ArchiveError, match=schema.INDEX_FILE) as err:
        load_archive(archive_dir, tmp_path / "cache")
    assert str(archive_dir) in str(err.value)
    assert schema.STOCKS_FILE not in str(err.value)
    assert cache_files(tmp_path / "cache") == []


def test_no_archive_at_all_says_so(tmp_path):
    with pytest.raises(ArchiveError, match="none of") as err:
        load_archive(tmp_path / "empty", tmp_path / "cache")
    assert all(name in str(err.value) for name in schema.ARCHIVE_FILES)


@pytest.mark.parametrize("name", schema.ARCHIVE_FILES)
def test_zero_byte_file(archive_dir, tmp_path, name):
    (archive_dir / name).write_bytes(b"")
    with pytest.raises(ArchiveError, match=rf"^{name}: empty file \(0 bytes\)$"):
        load_archive(archive_dir, tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


@pytest.mark.parametrize("name", schema.ARCHIVE_FILES)
def test_header_without_rows(tmp_path, name):
    rows = {schema.STOCKS_FILE: "stocks", schema.COMPANIES_FILE: "companies"}
    key = rows.get(name, "index")
    folder = write_archive(tmp_path / "d", **{key: []})
    with pytest.raises(ArchiveError, match=rf"^{name}: header but no data rows$"):
        load_archive(folder, tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


# --- headers ------------------------------------------------------------------------------------
def test_renamed_column_names_both(tmp_path):
    header = STOCKS_HEADER.replace("Adj Close", "Adj_Close")
    folder = write_archive(tmp_path / "d", headers={schema.STOCKS_FILE: header})
    with pytest.raises(ArchiveError) as err:
        load_archive(folder, tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"{schema.STOCKS_FILE}: line 1")
    assert "'Adj_Close' found where 'Adj Close' expected" in message
    assert cache_files(tmp_path / "cache") == []


def test_missing_column_is_named(tmp_path):
    header = INDEX_HEADER.replace(",S&P500", "")
    rows = [r.split(",")[0] for r in index_rows()]
    folder = write_archive(tmp_path / "d", index=rows, headers={schema.INDEX_FILE: header})
    with pytest.raises(ArchiveError, match=r"sp500_index.csv: line 1 .*column 'S&P500' missing"):
        load_archive(folder, tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_unexpected_extra_column(tmp_path):
    header = COMPANIES_HEADER + ",Extra"
    rows = [r + ",x" for r in company_rows()]
    folder = write_archive(tmp_path / "d", companies=rows, headers={schema.COMPANIES_FILE: header})
    with pytest.raises(
        ArchiveError, match=r"sp500_companies.csv: line 1 .*unexpected column 'Extra'"
    ):
        load_archive(folder, tmp_path / "cache")


# --- bad values: one case per rule, with the exact line ------------------------------------------
def _set_field(row: str, column: str, value: str) -> str:
    fields = row.split(",")
    fields[schema.STOCKS_COLUMNS.index(column)] = value
    return ",".join(fields)


@dataclass(frozen=True)
class Case:
    """Mutate data row ``row`` (0-based, so file line row + 2) of one file."""

    file: str
    row: int
    column: str
    mutate: Callable[[str], str]
    says: str


def _stock(row: int, column: str, value: str, says: str) -> Case:
    return Case(schema.STOCKS_FILE, row, column, lambda r: _set_field(r, column, value), says)


def _index(row: int, column: str, value: str, says: str) -> Case:
    def mutate(r: str) -> str:
        day, level = r.split(",")
        return f"{value},{level}" if column == "Date" else f"{day},{value}"

    return Case(schema.INDEX_FILE, row, column, mutate, says)


BAD_VALUES = {
    "unparsable number": _stock(10, "Close", "12.3.4", "unparsable number: '12.3.4'"),
    "text in a number": _stock(11, "Volume", "lots", "unparsable number: 'lots'"),
    "slashed date": _stock(3, "Date", "2020/01/06", "YYYY-MM-DD"),
    "impossible date": _stock(4, "Date", "2020-02-30", "not a valid calendar date: '2020-02-30'"),
    "empty date": _stock(4, "Date", "", "empty date"),
    "empty symbol": _stock(6, "Symbol", "", "empty symbol"),
    "bad symbol": _stock(6, "Symbol", "A A", "symbol not made of"),
    "NaN": _stock(12, "High", "NaN", "non-finite number: nan"),
    "inf": _stock(13, "Volume", "inf", "non-finite number: inf"),
    "overflow": _stock(
        14, "Open", "1e400", "number out of range for a 64-bit float (beyond +-1.8e308): '1e400'"
    ),
    "underflow": _stock(
        15,
        "Low",
        "1e-400",
        "number out of range for a 64-bit float (too small: it reads as 0): '1e-400'",
    ),
    "non-leap Feb 29": _stock(4, "Date", "2021-02-29", "not a valid calendar date: '2021-02-29'"),
    "month 13": _stock(4, "Date", "2020-13-01", "not a valid calendar date: '2020-13-01'"),
    "zero Adj Close": _stock(20, "Adj Close", "0", "non-positive price: 0.0"),
    "negative Close": _stock(21, "Close", "-1.5", "non-positive price: -1.5"),
    "zero High": _stock(22, "High", "0", "non-positive price"),
    "negative Low": _stock(23, "Low", "-2", "non-positive price"),
    "zero Open": _stock(24, "Open", "0.0", "non-positive price"),
    "negative volume": _stock(25, "Volume", "-10", "negative volume: -10.0"),
    "High below Low": _stock(30, "High", "1.0", "High below Low: High=1.0, Low="),
    "partly empty row": _stock(7, "Close", "", "empty value in a row with other prices"),
    "index level zero": _index(5, "S&P500", "0", "non-positive index level: 0.0"),
    "index level negative": _index(6, "S&P500", "-3", "non-positive index level"),
    "index level text": _index(7, "S&P500", "n/a", "unparsable number: 'n/a'"),
    "index level empty": _index(8, "S&P500", "", "empty index level"),
    "index level NaN": _index(9, "S&P500", "nan", "non-finite number"),
    "index bad date": _index(2, "Date", "02.01.2020", "YYYY-MM-DD"),
    "index overflow": _index(3, "S&P500", "-" + "7" * 400, "number out of range"),
    "padded text": _stock(11, "Volume", " lots ", "unparsable number: ' lots '"),
    "text after a padded number": _stock(12, "Volume", "12 3", "unparsable number: '12 3'"),
}


@pytest.mark.parametrize("case", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_value_names_file_line_and_column(tmp_path, case):
    key = "stocks" if case.file == schema.STOCKS_FILE else "index"
    rows = stock_rows() if key == "stocks" else index_rows()
    rows[case.row] = case.mutate(rows[case.row])
    folder = write_archive(tmp_path / "d", **{key: rows})
    with pytest.raises(ArchiveError) as err:
        load_archive(folder, tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"{case.file}: line {case.row + 2}")
    assert f"column '{case.column}'" in message
    assert case.says in message
    assert "\n" not in message
    assert cache_files(tmp_path / "cache") == []


def test_partly_empty_row_of_a_placeholder_symbol_is_an_error(tmp_path):
    rows = stock_rows()
    rows[2 * N_DAYS] = rows[2 * N_DAYS].replace(",,,,,,", ",,,,,,100")  # CCC before listing
    with pytest.raises(ArchiveError, match=rf"line {2 * N_DAYS + 2} .*column 'Adj Close'"):
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")


def test_first_bad_line_is_reported(tmp_path):
    rows = stock_rows()
    rows[50] = _set_field(rows[50], "Close", "-1")
    rows[20] = _set_field(rows[20], "High", "nan")
    with pytest.raises(ArchiveError, match=r"line 22 \(Symbol 'AAA'\), column 'High': non-finite"):
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")


def test_duplicate_date_symbol(tmp_path):
    rows = stock_rows()
    rows.insert(60, rows[7])  # AAA's 8th day again, after all of BBB
    with pytest.raises(ArchiveError) as err:
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"{schema.STOCKS_FILE}: line 62")
    assert "columns 'Date', 'Symbol'" in message
    assert "duplicate, first seen at line 9" in message
    assert cache_files(tmp_path / "cache") == []


def test_duplicate_index_date(tmp_path):
    rows = index_rows()
    rows[12] = rows[11].split(",")[0] + ",3100.5"
    with pytest.raises(ArchiveError, match=r"sp500_index.csv: line 14, column 'Date': duplicate"):
        load_archive(write_archive(tmp_path / "d", index=rows), tmp_path / "cache")


def test_duplicate_company_counts_multiline_records(tmp_path):
    rows = company_rows()
    rows.append(rows[0])  # each record spans 2 lines: the copy starts on line 8
    with pytest.raises(ArchiveError) as err:
        load_archive(write_archive(tmp_path / "d", companies=rows), tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"{schema.COMPANIES_FILE}: line 8, column 'Symbol'")
    assert "first seen at line 2" in message and "'AAA'" in message


def test_company_number_error_names_symbol_and_true_line(tmp_path):
    rows = company_rows()
    rows[2] = rows[2].replace(",3000000000.0,", ",lots,")  # Marketcap of CCC
    with pytest.raises(ArchiveError) as err:
        load_archive(write_archive(tmp_path / "d", companies=rows), tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"{schema.COMPANIES_FILE}: line 6 (Symbol 'CCC')")
    assert "column 'Marketcap'" in message and "'lots'" in message


def test_company_non_finite_number(tmp_path):
    rows = company_rows()
    rows[1] = rows[1].replace(",0.05,", ",inf,")  # Revenuegrowth of BBB
    with pytest.raises(ArchiveError, match=r"line 4 \(Symbol 'BBB'\), column 'Revenuegrowth'"):
        load_archive(write_archive(tmp_path / "d", companies=rows), tmp_path / "cache")


# --- issue 18, item 12: what a message says about odd values and odd files -----------------------
@pytest.mark.parametrize("pad", [" {} ", "{} ", " {}", "\t{}\t", "{}  "])
@pytest.mark.parametrize("batch_rows", [16, 250_000])
def test_spaces_around_numbers_are_accepted_wherever_they_are(tmp_path, monkeypatch, pad,
                                                              batch_rows):  # fmt: skip
    """Leading or trailing spaces (or tabs) around a number read as the number, in every
    file, in any batch of the streamed prices: the same tables as without them."""
    from engine.data.archive import csvfile

    monkeypatch.setattr(csvfile, "BATCH_ROWS", batch_rows)
    clean = load_archive(write_archive(tmp_path / "clean"), tmp_path / "c1")
    stocks, index, companies = stock_rows(), index_rows(), company_rows()
    for row in (3, 40, 70):  # in the first batch and in later ones
        stocks[row] = _set_field(stocks[row], "Close", pad.format(stocks[row].split(",")[3]))
    day, level = index[9].split(",")
    index[9] = f"{day},{pad.format(level)}"
    companies[1] = companies[1].replace(",0.05,", f",{pad.format('0.05')},")
    padded = load_archive(
        write_archive(tmp_path / "pad", stocks, companies, index), tmp_path / "c2"
    )
    assert padded.prices.collect().equals(clean.prices.collect())
    assert padded.index.collect().equals(clean.index.collect())
    assert padded.companies.equals(clean.companies)


def test_a_bad_number_after_a_padded_one_names_its_line(tmp_path, monkeypatch):
    from engine.data.archive import csvfile

    monkeypatch.setattr(csvfile, "BATCH_ROWS", 16)
    rows = stock_rows()
    rows[20] = _set_field(rows[20], "Open", "10.5 ")
    rows[50] = _set_field(rows[50], "Open", "10..5")
    with pytest.raises(ArchiveError, match=r"^sp500_stocks.csv: line 52 \(Symbol 'BBB'\), "
                       r"column 'Open': unparsable number: '10..5'$"):  # fmt: skip
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")


def test_a_number_too_long_for_a_float_shows_its_first_characters(tmp_path):
    rows = stock_rows()
    rows[6] = _set_field(rows[6], "Adj Close", "9" * 5_000_000)
    with pytest.raises(ArchiveError) as err:
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert str(err.value) == (
        "sp500_stocks.csv: line 8 (Symbol 'AAA'), column 'Adj Close': number out of range for "
        f"a 64-bit float (beyond +-1.8e308): '{'9' * 24}'... (5,000,000 characters)"
    )


COMPRESSED = {
    "gzip": (lambda data: __import__("gzip").compress(data), "gzip-compressed data"),
    "bzip2": (lambda data: __import__("bz2").compress(data), "bzip2-compressed data"),
    "xz": (lambda data: __import__("lzma").compress(data), "xz-compressed data"),
    "zip": (lambda data: _zipped(data), "a zip archive (unzip it first)"),
}


def _zipped(data: bytes) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sp500_stocks.csv", data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", schema.ARCHIVE_FILES)
@pytest.mark.parametrize("kind", COMPRESSED, ids=COMPRESSED.keys())
def test_a_compressed_file_named_csv_is_said_to_look_compressed(tmp_path, name, kind):
    compress, says = COMPRESSED[kind]
    folder = write_archive(tmp_path / "d")
    (folder / name).write_bytes(compress((folder / name).read_bytes()))
    with pytest.raises(ArchiveError) as err:
        load_archive(folder, tmp_path / "cache")
    assert str(err.value).startswith(f"{name}: not CSV text: it looks like {says}")


def _special(kind: str, path: Path) -> None:
    import os

    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "broken link":
        path.symlink_to(path.parent / "nowhere.csv")
    else:
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()


SPECIAL = {"directory": "a directory", "FIFO": "a FIFO (named pipe)",
           "device": "a character device", "broken link": "a broken symbolic link",
           "socket": "a socket"}  # fmt: skip


@pytest.mark.parametrize("kind", SPECIAL, ids=SPECIAL.keys())
@pytest.mark.parametrize("name", schema.ARCHIVE_FILES)
def test_a_path_that_is_not_a_file_is_said_to_be_what_it_is(tmp_path, kind, name):
    """Not "not found": what the path is; a FIFO is never opened (that would block)."""
    from tests.reliability_helpers import time_limit

    folder = write_archive(tmp_path / "d")
    (folder / name).unlink()
    _special(kind, folder / name)
    with (
        time_limit(30, "loading an archive with a special file"),
        pytest.raises(ArchiveError) as err,
    ):
        load_archive(folder, tmp_path / "cache")
    assert str(err.value) == f"{name} in {folder} is {SPECIAL[kind]}, not a regular file"


# --- malformed CSV structure --------------------------------------------------------------------
def test_too_many_fields(tmp_path):
    rows = stock_rows()
    rows[15] += ",99"
    with pytest.raises(ArchiveError, match=r"sp500_stocks.csv: line 17: 9 fields where 8 expected"):
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")


def test_invalid_utf8(tmp_path):
    folder = write_archive(tmp_path / "d")
    path = folder / schema.STOCKS_FILE
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"AAA", b"A\xffA")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(
        ArchiveError, match=r"sp500_stocks.csv: line 6, column 'Symbol': invalid UTF-8"
    ):
        load_archive(folder, tmp_path / "cache")


def test_unterminated_quote(tmp_path):
    rows = stock_rows()
    rows[9] = rows[9].replace("AAA", '"AAA')
    with pytest.raises(ArchiveError, match=r"^sp500_stocks.csv: line \d+"):
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")


def test_stray_quote_names_line_and_column(tmp_path):
    rows = stock_rows()
    rows[33] = rows[33].replace(",BBB,", ',B"BB,')
    with pytest.raises(ArchiveError) as err:
        load_archive(write_archive(tmp_path / "d", rows), tmp_path / "cache")
    assert str(err.value) == (
        "sp500_stocks.csv: line 35, column 'Symbol': malformed CSV (quote inside an unquoted field)"
    )


def test_file_changed_during_load_is_an_error(tmp_path, monkeypatch):
    import engine.data.archive as archive_module

    folder = write_archive(tmp_path / "d")
    real = archive_module.index_levels

    def index_then_touch(path: Path) -> pl.DataFrame:
        with open(folder / schema.STOCKS_FILE, "a") as handle:
            handle.write(stock_rows()[0].replace("AAA", "ZZZ") + "\n")
        return real(path)

    monkeypatch.setattr(archive_module, "index_levels", index_then_touch)
    with pytest.raises(ArchiveError, match="changed while being loaded"):
        load_archive(folder, tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


# --- property: mangled input only ever raises ArchiveError ----------------------------------------
TOKENS = st.sampled_from(
    ["", " ", "0", "-1", "1e400", "nan", "inf", "abc", '"', '""', ",", "\n", "\r\n",
     "2020-13-01", "2020-01-01", "AAA", "\ufeff", "é", "1,5", '"x\ny"', "\x00"]
)  # fmt: skip
CELL = st.one_of(TOKENS, st.text(max_size=6))
MUTATION = st.tuples(
    st.sampled_from(["cell", "drop_line", "dup_line", "truncate", "bytes"]),
    st.sampled_from(schema.ARCHIVE_FILES),
    st.integers(0, 10_000),
    st.integers(0, 20),
    CELL,
)


def _mangle(folder: Path, kind: str, name: str, pos: int, col: int, cell: str) -> None:
    path = folder / name
    data = path.read_bytes()
    lines = data.split(b"\n")
    i = pos % len(lines)
    if kind == "cell":
        fields = lines[i].split(b",")
        fields[col % len(fields)] = cell.encode()
        lines[i] = b",".join(fields)
    elif kind == "drop_line":
        del lines[i]
    elif kind == "dup_line":
        lines.insert(i, lines[i])
    elif kind == "truncate":
        path.write_bytes(data[: pos % (len(data) + 1)])
        return
    else:
        lines[i] = lines[i][:col] + cell.encode("utf-8", "surrogatepass")[:3] + b"\xff"[: col % 2]
    path.write_bytes(b"\n".join(lines))


def _check_mangled(mutations: list[tuple[str, str, int, int, str]]) -> None:
    """Load a mangled tiny archive: ArchiveError (one line, nothing cached) or a clean result."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_archive(Path(tmp) / "d")
        for mutation in mutations:
            _mangle(folder, *mutation)
        try:
            archive = load_archive(folder, Path(tmp) / "cache")
        except ArchiveError as err:
            message = str(err)
            assert "\n" not in message
            assert any(name in message for name in schema.ARCHIVE_FILES)
            assert cache_files(Path(tmp) / "cache") == []
            return
        prices = archive.prices.collect()
        assert prices.null_count().sum_horizontal().item() == 0
        assert prices.filter(pl.col("high") < pl.col("low")).height == 0
        assert prices.select(pl.struct("symbol", "date").is_unique().all()).item()
        assert prices.equals(prices.sort("symbol", "date"))
        assert all("\n" not in w for w in archive.warnings)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mangled_archive_raises_only_archive_error(mutations):
    _check_mangled(mutations)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_mangled_archive_raises_only_archive_error_long(mutations):
    _check_mangled(mutations)
