"""Issue 8, item 1: fuzzed archives end in a result or in one clear error line.

A hypothesis fuzzer mutates a tiny valid archive (4 symbols x 2.5 years): mangled
headers, other delimiters, quoted fields, BOMs, CRLF, blank lines, huge / negative /
NaN / inf numbers, dates out of order or in other formats, unicode symbols, truncated
and empty files, stray bytes; and (issue 18) numbers padded with spaces, numbers of
hundreds of digits, dates off the calendar, compressed files, a directory or FIFO in a
file's place, implausible prices (a day at 1e-300 or x1000, an unadjusted split). Each
case runs the whole ``engine run`` in-process (click's CliRunner, ~0.1 s) under a hard
time limit, with numpy's RuntimeWarnings raised as errors, and must end in exactly one of:

* success (exit 0): every output file present and parseable, strict JSON metrics, and,
  when every mutation preserves the data's meaning (BOM, CRLF, quoting, blank lines,
  row order), outputs identical to the unmutated archive's;
* failure: a non-zero exit, exactly one ``engine: error:`` line (the last on stderr), no
  traceback, no output file written, and a cache holding only valid entries.

Default tier: a derandomised sample; slow tier: 1,000 random cases. A few cases also
run as real processes, to check stderr itself for tracebacks.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine import schema
from tests.reliability_helpers import (
    TINY_RUN,
    Outcome,
    assert_no_partial_files,
    assert_one_error_line,
    assert_valid_cache,
    comparable_outputs,
    invoke,
    is_temporary,
    output_names,
    run_process,
    time_limit,
    tiny_archive,
)

FILES = schema.ARCHIVE_FILES  # stocks, companies, index
CASE_LIMIT_S = 60  # one tiny run takes ~0.1 s; a case this slow is a hang
OUTPUTS = output_names()
CSV_OUTPUTS = [n for n in OUTPUTS if n.endswith(".csv")]


@functools.cache
def pristine() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The tiny archive's bytes and the outputs of an unmutated run (computed once; not a
    fixture, so that hypothesis never prints it)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = tiny_archive(Path(tmp) / "data")
        outcome = invoke("-q", "run", *TINY_RUN, "--data-path", str(folder),
                         "--output-path", str(Path(tmp) / "out"))  # fmt: skip
        assert outcome.code == 0, outcome.stderr
        files = {name: (folder / name).read_bytes() for name in FILES}
        return files, comparable_outputs(Path(tmp) / "out", CSV_OUTPUTS)


# --- mutations ------------------------------------------------------------------------------------
Files = dict[str, bytes]


@dataclass(frozen=True)
class Mutation:
    """One change to the archive's files; ``safe`` if it keeps the data's meaning.
    ``special``: the file becomes a directory or a FIFO (after every other change)."""

    what: str
    safe: bool
    apply: Callable[[Files], Files] = field(compare=False)
    special: tuple[str, str] | None = None  # (file name, "directory" or "fifo")

    def __repr__(self) -> str:
        return f"<{self.what}{' (meaning-preserving)' if self.safe else ''}>"


NUMBERS = ["1e308", "1e300", "-1e300", "1e-300", "5e-324", "1e400", "-1", "-0", "0", "NaN",
           "nan", "inf", "-inf", "Infinity", "+12.5", " 12.5 ", "1,234.5", "0x1F", "1_000",
           "12.5.1", "", "null", "NA", "999999999999999999999999", "٣", "1e", "e5",
           "9" * 400, "-" + "9" * 400, "0." + "0" * 400 + "1", "1e-400", "12.5 \t"]  # fmt: skip
DATES = ["2015-13-01", "2015-02-30", "2015/01/05", "05/01/2015", "01-05-2015", "20150105",
         "2015-1-5", "2015-01-05T00:00:00", "2015-01-05 00:00:00", "1899-12-31", "2200-01-01",
         "0001-01-01", "9999-12-31", "", "yesterday", "2015-01-05Z", " 2015-01-05",
         "2015-02-29", "2100-02-29", "2016-04-31", "2015-00-10"]  # fmt: skip
SYMBOLS = ["ÄÖÜ", "🚀", "A\u200bB", "ΑΒΓ", "ＡＡＰＬ", "BRK.B", "BF-B", "a b", "", "X" * 300,
           "A\tB", "'A'", "A;B", "\u202eLTR", "A\x00B"]  # fmt: skip
TEXT = ["é", "中文", "\ufeff", '"', '""', "\r", "\x00", "\\N", "a,b", "🚀🚀", "\u2028"]
DELIMITERS = [";", "\t", "|", " ", ",,"]
KINDS = ["bom", "crlf", "blank_lines", "quote_all", "shuffle", "header", "delimiter", "number",
         "scale", "date", "date_format", "swap_rows", "symbol", "text", "truncate", "empty",
         "header_only", "drop_line", "dup_line", "bytes", "cell", "pad", "compress",
         "special", "implausible"]  # fmt: skip


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def _data_line(lines: list[bytes], row: int) -> int | None:
    """Index of a data line (not the header, not the final empty string), or None."""
    return 1 + row % (len(lines) - 2) if len(lines) > 2 else None


def _set_cell(data: bytes, row: int, col: int, value: str) -> bytes:
    lines = _lines(data)
    i = _data_line(lines, row)
    if i is None:
        return data
    fields = lines[i].split(b",")
    fields[col % len(fields)] = value.encode("utf-8", "surrogatepass")
    lines[i] = b",".join(fields)
    return _join(lines)


def _column_values(data: bytes, col: int, value: Callable[[bytes], bytes]) -> bytes:
    lines = _lines(data)
    for i in range(1, len(lines)):
        fields = lines[i].split(b",")
        if len(fields) > col and fields[col]:
            try:
                fields[col] = value(fields[col])
            except ValueError:  # an earlier mutation made it something else
                continue
            lines[i] = b",".join(fields)
    return _join(lines)


def _quote_all(data: bytes) -> bytes:
    try:
        text = data.decode("utf-8")
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerows(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error):
        return data
    return out.getvalue().encode()


def _shuffle_rows(data: bytes, seed: int) -> bytes:
    lines = _lines(data.rstrip(b"\n"))
    body = lines[1:]
    random.Random(seed).shuffle(body)
    return _join([lines[0], *body]) + b"\n"


def _blank_lines(data: bytes, where: list[int]) -> bytes:
    lines = _lines(data)
    for w in where:  # never before the header
        lines.insert(1 + w % max(len(lines) - 1, 1), b"")
    return _join(lines)


def _header(data: bytes, how: str, i: int, j: int, junk: str) -> bytes:
    lines = _lines(data)
    cols = lines[0].split(b",")
    i, j = i % len(cols), j % len(cols)
    if how == "rename":
        cols[i] = junk.encode("utf-8", "surrogatepass")
    elif how == "drop":
        del cols[i]
    elif how == "swap":
        cols[i], cols[j] = cols[j], cols[i]
    elif how == "upper":
        cols = [c.upper() for c in cols]
    elif how == "spaces":
        cols[i] = b" " + cols[i] + b" "
    elif how == "dup":
        cols.insert(i, cols[i])
    elif how == "empty":
        cols = [b""]
    else:
        cols = [b";".join(cols)]
    return _join([b",".join(cols), *lines[1:]])


def _delimit(data: bytes, sep: str, body_only: bool) -> bytes:
    if not body_only:
        return data.replace(b",", sep.encode())
    lines = _lines(data)
    return _join([lines[0], *(line.replace(b",", sep.encode()) for line in lines[1:])])


def _reformat_dates(data: bytes, fmt: str) -> bytes:
    return _column_values(data, 0, lambda v: date.fromisoformat(v.decode()).strftime(fmt).encode())


def _swap(data: bytes, row: int, col: int) -> bytes:
    lines = _lines(data)
    i, j = _data_line(lines, row), _data_line(lines, col * 97)
    if i is None or j is None:
        return data
    lines[i], lines[j] = lines[j], lines[i]
    return _join(lines)


def _rename_symbol(files: Files, row: int, value: str, everywhere: bool) -> Files:
    stocks = files[schema.STOCKS_FILE]
    lines = _lines(stocks)
    i = _data_line(lines, row)
    if not everywhere or i is None or len(lines[i].split(b",")) < 2:
        return {**files, schema.STOCKS_FILE: _set_cell(stocks, row, 1, value)}
    old, new = (
        b"," + lines[i].split(b",")[1] + b",",
        b"," + value.encode("utf-8", "surrogatepass") + b",",
    )
    companies = files[schema.COMPANIES_FILE]  # the same symbol renamed in both files
    return {**files, schema.STOCKS_FILE: stocks.replace(old, new),
            schema.COMPANIES_FILE: companies.replace(old, new)}  # fmt: skip


def _drop(data: bytes, row: int) -> bytes:
    lines = _lines(data)
    del lines[row % len(lines)]
    return _join(lines)


def _dup(data: bytes, row: int) -> bytes:
    lines = _lines(data)
    i = row % len(lines)
    lines.insert(i, lines[i])
    return _join(lines)


def _insert(data: bytes, at: int, junk: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + junk + data[at:]


def _scale(data: bytes, column: int, factor: float) -> bytes:
    return _column_values(data, column, lambda v: repr(float(v) * factor).encode())


def _pad(data: bytes, column: int, pad: bytes) -> bytes:
    """Every value of ``column`` (a number) with ``pad`` around it: the same numbers."""
    return _column_values(data, column, lambda v: pad + v + pad)


def _implausible(data: bytes, row: int, how: str) -> bytes:
    """One symbol's prices made implausible at data row ``row``: Adj Close at 1e-300 or
    x1000 for that day, or every price before it x4 (an unadjusted 4:1 split)."""
    lines = _lines(data)
    i = _data_line(lines, row)
    if i is None or len(lines[i].split(b",")) < 8 or not lines[i].split(b",")[2]:
        return data
    symbol = lines[i].split(b",")[1]
    for j in range(1, len(lines)):
        fields = lines[j].split(b",")
        if len(fields) < 8 or fields[1] != symbol or not fields[2]:
            continue
        try:
            if how == "split" and j < i:
                fields[2:7] = [repr(float(v) * 4).encode() for v in fields[2:7]]
            elif j == i and how != "split":
                fields[2] = b"1e-300" if how == "floor" else repr(float(fields[2]) * 1000).encode()
        except ValueError:  # an earlier mutation made it something else
            continue
        lines[j] = b",".join(fields)
    return _join(lines)


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """One random change to one (or two) of the archive's files."""
    name = draw(st.sampled_from(FILES))
    kind = draw(st.sampled_from(KINDS))
    row, col = draw(st.integers(0, 5000)), draw(st.integers(0, 20))
    keeps_rows = name != schema.COMPANIES_FILE  # companies summaries may span lines

    def on(what: str, fn: Callable[[bytes], bytes], safe: bool = False) -> Mutation:
        return Mutation(f"{name}: {what}", safe, lambda files: {**files, name: fn(files[name])})

    if kind == "bom":
        return on("UTF-8 BOM", lambda d: b"\xef\xbb\xbf" + d, safe=True)
    if kind == "crlf":
        return on("CRLF line endings", lambda d: d.replace(b"\n", b"\r\n"), safe=True)
    if kind == "blank_lines":
        where = draw(st.lists(st.integers(1, 5000), min_size=1, max_size=4))
        return on(f"blank lines at {where}", lambda d: _blank_lines(d, where), safe=keeps_rows)
    if kind == "quote_all":
        return on("every field quoted", _quote_all, safe=True)
    if kind == "shuffle":
        return on(f"rows shuffled (seed {row})", lambda d: _shuffle_rows(d, row), safe=keeps_rows)
    if kind == "swap_rows":
        return on(f"rows {row} and {col} swapped", lambda d: _swap(d, row, col), safe=keeps_rows)
    if kind == "header":
        how = draw(st.sampled_from(["rename", "drop", "swap", "upper", "spaces", "dup", "empty",
                                    "semicolon"]))  # fmt: skip
        junk = draw(st.sampled_from(TEXT + SYMBOLS))
        return on(f"header {how} #{col} {junk!r}", lambda d: _header(d, how, col, row, junk))
    if kind == "delimiter":
        sep, body_only = draw(st.sampled_from(DELIMITERS)), draw(st.booleans())
        return on(
            f"delimiter {sep!r} (body only: {body_only})", lambda d: _delimit(d, sep, body_only)
        )
    if kind == "number":
        value = draw(st.sampled_from(NUMBERS))
        return on(f"row {row} col {col} = {value!r}", lambda d: _set_cell(d, row, col, value))
    if kind == "scale":  # a whole price column huge, tiny, negative or zero
        factor, column = draw(st.sampled_from([1e300, 1e-300, -1.0, 1e15, 0.0])), 2 + col % 6
        return Mutation(f"stocks column {column} x {factor:g}", False, lambda files: {
            **files, schema.STOCKS_FILE: _scale(files[schema.STOCKS_FILE], column, factor)})  # fmt: skip
    if kind == "date":
        value = draw(st.sampled_from(DATES))
        return on(f"row {row} date = {value!r}", lambda d: _set_cell(d, row, 0, value))
    if kind == "date_format":
        fmt = draw(st.sampled_from(["%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%Y-%m-%dT00:00:00"]))
        target = draw(st.sampled_from([schema.STOCKS_FILE, schema.INDEX_FILE]))
        return Mutation(f"{target}: dates as {fmt}", False, lambda files: {
            **files, target: _reformat_dates(files[target], fmt)})  # fmt: skip
    if kind == "symbol":
        value, everywhere = draw(st.sampled_from(SYMBOLS)), draw(st.booleans())
        return Mutation(f"symbol -> {value!r} (everywhere: {everywhere})", False,
                        lambda files: _rename_symbol(files, row, value, everywhere))  # fmt: skip
    if kind == "text":
        value = draw(st.sampled_from(TEXT))
        return on(f"row {row} col {col} = {value!r}", lambda d: _set_cell(d, row, col, value))
    if kind == "truncate":
        fraction = draw(st.floats(0, 1))
        return on(f"truncated at {fraction:.3f}", lambda d: d[: int(len(d) * fraction)])
    if kind == "empty":
        return on("empty", lambda d: b"")
    if kind == "header_only":
        return on("header only", lambda d: _lines(d)[0] + b"\n")
    if kind == "drop_line":
        return on(f"line {row} dropped", lambda d: _drop(d, row))
    if kind == "dup_line":
        return on(f"line {row} repeated", lambda d: _dup(d, row))
    if kind == "bytes":
        junk = draw(st.binary(min_size=1, max_size=8))
        return on(f"bytes {junk!r} inserted at {row * 37}", lambda d: _insert(d, row * 37, junk))
    if kind == "pad":  # spaces or tabs around every value of a numeric column
        pad = draw(st.sampled_from([b" ", b"  ", b"\t", b" \t"]))
        column = {schema.STOCKS_FILE: 2 + col % 6, schema.INDEX_FILE: 1}.get(name, 1)
        return on(f"column {column} padded with {pad!r}", lambda d: _pad(d, column, pad),
                  safe=name != schema.COMPANIES_FILE)  # fmt: skip
    if kind == "compress":
        how = draw(st.sampled_from(["gzip", "bz2", "lzma"]))
        return on(f"{how}-compressed", lambda d: __import__(how).compress(d))
    if kind == "special":
        what = draw(st.sampled_from(["directory", "fifo"]))
        return Mutation(f"{name}: a {what}", False, lambda files: files, special=(name, what))
    if kind == "implausible":
        how = draw(st.sampled_from(["floor", "spike", "split"]))
        return Mutation(f"stocks row {row}: {how}", False, lambda files: {
            **files, schema.STOCKS_FILE: _implausible(files[schema.STOCKS_FILE], row, how)})  # fmt: skip
    value = draw(st.text(max_size=12))
    return on(f"row {row} col {col} = {value!r}", lambda d: _set_cell(d, row, col, value))


# --- the property -------------------------------------------------------------------------------
def check_case(chosen: list[Mutation]) -> None:
    files, expected = pristine()
    for mutation in chosen:
        files = mutation.apply(files)
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        data.mkdir()
        for name, content in files.items():
            (data / name).write_bytes(content)
        for name, what in [m.special for m in chosen if m.special]:
            _make_special(data / name, what)
        with time_limit(CASE_LIMIT_S, "engine run on a fuzzed archive"), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # numpy's, on stderr: a failure
            outcome = invoke("-q", "run", *TINY_RUN, "--data-path", str(data),
                             "--output-path", str(out))  # fmt: skip
        check_outcome(outcome, out)
        event("success" if outcome.code == 0 else _kind_of_error(outcome.stderr))
        if outcome.code == 0 and all(m.safe for m in chosen):
            assert comparable_outputs(out, CSV_OUTPUTS) == expected, "meaning-preserving change"
        shutil.rmtree(data)


def _make_special(path: Path, what: str) -> None:
    """Put a directory or a FIFO where ``path`` (a file) is."""
    if path.is_dir():
        return
    path.unlink(missing_ok=True)
    if what == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)


def _kind_of_error(stderr: str) -> str:
    """The error line without its values, for hypothesis' statistics."""
    line = stderr.strip().splitlines()[-1].removeprefix("engine: error: ")
    line = re.sub(r"/\S+", "<path>", line)
    return "error: " + re.sub(r"(line|row) \d+.*?:|'.*?'|\d+", "#", line)[:70]


def check_outcome(outcome: Outcome, out: Path, model: str = "ridge") -> None:
    """A complete result, or one error line and nothing written outside the cache."""
    assert not [p for p in out.rglob("*") if is_temporary(p)], "temporary files left behind"
    assert_valid_cache(out / "cache")
    if outcome.code == 0:
        assert outcome.exception is None, repr(outcome.exception)
        assert "Traceback" not in outcome.stderr
        for name in output_names(model):
            assert (out / name).is_file(), name
        assert_no_partial_files(out)
        return
    assert_one_error_line(outcome)
    written = [p for p in out.iterdir() if p.name != "cache"] if out.exists() else []
    assert written == [], f"partial output after a failure: {written}"


FUZZ_SETTINGS = {
    "deadline": None,  # time_limit bounds each case; a deadline would only add flakiness
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=60, derandomize=True, database=None, **FUZZ_SETTINGS)
@given(chosen=st.lists(mutations(), min_size=1, max_size=3))
def test_fuzzed_archive_gives_a_result_or_one_error_line(chosen):
    check_case(chosen)


@pytest.mark.slow
@settings(max_examples=1000, **FUZZ_SETTINGS)
@given(chosen=st.lists(mutations(), min_size=1, max_size=4))
def test_fuzzed_archive_gives_a_result_or_one_error_line_1000(chosen):
    check_case(chosen)


# --- the same guarantee seen from outside: a real process's stderr ----------------------------
SUBPROCESS_CASES = {
    "truncated stocks": lambda f: {**f, FILES[0]: f[FILES[0]][: len(f[FILES[0]]) // 2 + 7]},
    "binary garbage index": lambda f: {**f, FILES[2]: bytes(range(256)) * 40},
    "nan price": lambda f: {**f, FILES[0]: _set_cell(f[FILES[0]], 900, 2, "NaN")},
    "huge prices": lambda f: {**f, FILES[0]: _scale(f[FILES[0]], 2, 1e300)},
}  # fmt: skip


@pytest.mark.parametrize("mutate", SUBPROCESS_CASES.values(), ids=SUBPROCESS_CASES.keys())
def test_bad_archive_as_a_real_process_has_no_traceback(tmp_path, mutate):
    files, _ = pristine()
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for name, content in mutate(dict(files)).items():
        (data / name).write_bytes(content)
    outcome = run_process(["-q", "run", *TINY_RUN, "--data-path", str(data),
                           "--output-path", str(out)], timeout=300)  # fmt: skip
    check_outcome(outcome, out)
    assert outcome.code in (0, 1), outcome.stderr
    # Nothing but the engine's own lines on stderr: no Python warning, no library chatter.
    stray = [
        line for line in outcome.stderr.splitlines() if line and not line.startswith("engine: ")
    ]
    assert stray == [], outcome.stderr


# --- issue 18: settings a careless user gives, on the pristine archive ---------------------------
SETTINGS = {
    "--horizon": ["1", "5", "500", "100000"],
    "--min-train-periods": ["1", "3", "200"],
    "--top-stocks": ["1", "3", "50"],
    "--sector-cap": ["0.05", "0.3", "1"],
    "--rebalance": ["weekly", "quarterly"],
    "--train-window": ["rolling"],
    "--rolling-periods": ["1", "4"],
    "--model": ["ridge", "elasticnet", "momentum", "equal_weight", "hist_gbm"],
    "--weighting": ["inverse_vol", "min_variance", "mean_variance"],
    "--alpha": ["0.001", "1000000"],
    "--validation-periods": ["1", "3", "200"],
    "--execution-lag": ["0", "300"],
    "--cost-bps": ["0", "10000"],
    "--max-weight": ["0.01", "1"],
}


@st.composite
def run_settings(draw: st.DrawFn) -> list[str]:
    """A few settings of ``engine run``, each an extreme or an ordinary value."""
    names = sorted(draw(st.sets(st.sampled_from(sorted(SETTINGS)), min_size=1, max_size=4)))
    flags = [x for name in names for x in (name, draw(st.sampled_from(SETTINGS[name])))]
    return flags + (["--tune"] if "--validation-periods" in names else [])


def check_settings(flags: list[str]) -> None:
    files, _ = pristine()
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        data.mkdir()
        for name, content in files.items():
            (data / name).write_bytes(content)
        with time_limit(CASE_LIMIT_S, "engine run with fuzzed settings"), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            outcome = invoke("-q", "run", *TINY_RUN, *flags, "--train-dates", "20",
                             "--data-path", str(data), "--output-path", str(out))  # fmt: skip
        check_outcome(outcome, out, model=flags[flags.index("--model") + 1]
                      if "--model" in flags else "ridge")  # fmt: skip
        event("success" if outcome.code == 0 else _kind_of_error(outcome.stderr))


@settings(max_examples=30, derandomize=True, database=None, **FUZZ_SETTINGS)
@given(flags=run_settings())
def test_fuzzed_settings_give_a_result_or_one_error_line(flags):
    check_settings(flags)


@pytest.mark.slow
@settings(max_examples=300, **FUZZ_SETTINGS)
@given(flags=run_settings())
def test_fuzzed_settings_give_a_result_or_one_error_line_300(flags):
    check_settings(flags)


SMALLEST_PRICE = Mutation(
    what=f"{FILES[0]}: row 252 col 2 = '5e-324'", safe=False,
    apply=lambda files: {**files, FILES[0]: _set_cell(files[FILES[0]], 252, 2, "5e-324")},
    special=None,
)  # fmt: skip


@settings(max_examples=1, database=None, **FUZZ_SETTINGS)
@given(chosen=st.just([SMALLEST_PRICE]))
def test_a_price_of_the_smallest_double_gives_a_result_without_numpy_warnings(chosen):
    """A case hypothesis found: a return through 5e-324 overflows to inf; the label is
    then unknown, not an inf that turns the model's moments into NaN."""
    check_case(chosen)
