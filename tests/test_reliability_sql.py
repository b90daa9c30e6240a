"""Issue 8, item 5: ``engine sql`` reads the engine's own data and nothing else; issue 18,
item 15: and within bounds (a row cap, DuckDB's memory and temporary disk).

Every escape attempt is tried twice:

* through the command (``engine sql``): it must end in one error line, exit 1, and leave
  every file as it was (no file created, the cache and outputs byte-identical);
* on the read-only connection itself (``sqlviews.open_read_only``), bypassing the
  command's one-SELECT rule: DuckDB's own controls (``enable_external_access = false``
  with ``allowed_paths`` = the files the views read, extension auto-install/auto-load off,
  ``lock_configuration = true``, the database opened read-only) must refuse it.

One write is refused by the command alone: DuckDB's ``allowed_paths`` grants writes as
well as reads, so on the raw connection ``COPY ... TO '<a cache file>'`` would succeed;
the command executes only a single SELECT (DuckDB's own parser says which), and a
cache file changed anyway would be detected by its manifest and rebuilt.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import polars as pl
import pytest

from engine.views.database import (
    DATABASE_FILE,
    QueryError,
    Sources,
    ensure_database,
    open_read_only,
)
from engine.views.query import run_query
from tests.reliability_helpers import (
    TINY_RUN,
    assert_one_error_line,
    invoke,
    run_with_rss_cap,
    tiny_archive,
)

CANARY = "canary-5f0c1d2e-not-for-sql"


@pytest.fixture(scope="module")
def engine_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run's outputs and cache, the views database, and a secret file beside them."""
    root = tmp_path_factory.mktemp("sql")
    data, out = tiny_archive(root / "data"), root / "out"
    done = invoke("-q", "run", *TINY_RUN, "--data-path", str(data), "--output-path", str(out))
    assert done.code == 0, done.stderr
    assert invoke("sql", "select 1", "--data-path", str(data), "--output-path", str(out)).code == 0
    secret = root / "secret.txt"
    secret.write_text(f"{CANARY}\n")
    cache = next(p for p in (out / "cache").iterdir() if p.is_dir() and p.name != "frames")
    return {"root": root, "data": data, "out": out, "secret": secret, "cache": cache}


def sql(engine_data: dict[str, Path], query: str, *extra: str):
    paths = ["--data-path", str(engine_data["data"]), "--output-path", str(engine_data["out"])]
    return invoke("sql", query, *extra, *paths)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its content hash (but the cache's memo of input file
    hashes, which any command may write once the inputs are old enough to memoise)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "hashes.json"
    }


def escapes(d: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """name -> (query, what the error line must say)."""
    root, out, cache = d["root"], d["out"], d["cache"]
    denied = "Permission Error"
    select_only = "only SELECT"
    return {
        "read /etc/passwd": ("select * from read_csv('/etc/passwd')", denied),
        "read a file as text": ("select * from read_text('/etc/passwd')", denied),
        "read a file as blob": ("select * from read_blob('/etc/hostname')", denied),
        "read a secret beside the data": (f"select * from read_text('{d['secret']}')", denied),
        "read the environment": ("select * from read_text('/proc/self/environ')", denied),
        "replacement scan of a path": ("select * from '/etc/passwd'", "/etc/passwd"),
        "list a folder": ("select * from glob('/etc/*')", denied),
        "list the output folder": (f"select * from glob('{out}/*')", denied),
        "path traversal": (f"select * from read_text('{cache}/prices.parquet/../../../../../../etc/passwd')", denied),
        "another output file": (f"select * from read_text('{out}/metrics_ridge.json')", denied),
        "a url": ("select * from read_csv('https://example.com/x.csv')", denied),
        "getenv": ("select getenv('HOME')", "getenv"),
        "copy out": (f"copy (select 1) to '{root}/leak.csv'", select_only),
        "copy over the cache": (f"copy (select 1 as x) to '{cache}/prices.parquet' (format parquet, use_tmp_file false)", select_only),
        "export": (f"export database '{root}/export'", select_only),
        "attach a file": (f"attach '{root}/evil.duckdb' as evil", select_only),
        "attach memory": ("attach ':memory:' as m", select_only),
        "install": ("install httpfs", select_only),
        "load": ("load httpfs", select_only),
        "load_extension()": ("select load_extension('httpfs')", "load_extension"),
        "enable external access": ("set enable_external_access = true", select_only),
        "unlock the configuration": ("set lock_configuration = false", select_only),
        "widen allowed paths": ("set allowed_paths = ['/etc/passwd']", select_only),
        "widen allowed directories": ("set allowed_directories = ['/']", select_only),
        "reset a setting": ("reset enable_external_access", select_only),
        "pragma": ("pragma enable_profiling", select_only),
        "create a table": ("create table t as select 1", select_only),
        "create a secret": ("create secret s (type s3, key_id 'k', secret 'v')", select_only),
        "two statements": ("select 1; attach ':memory:' as m", "exactly one"),
        "query() wrapper": ("select * from query('copy (select 1) to ''/tmp/x''')", "SELECT"),
        "checkpoint": ("checkpoint", select_only),
    }  # fmt: skip


def test_every_escape_attempt_through_the_command_is_one_error_line(engine_data):
    before = snapshot(engine_data["root"])
    for name, (query, says) in escapes(engine_data).items():
        outcome = sql(engine_data, query)
        try:
            line = assert_one_error_line(outcome, says)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
        assert outcome.code == 1, name
        assert CANARY not in outcome.stdout + line, name
    assert snapshot(engine_data["root"]) == before, "a query changed or created a file"


RAW_ESCAPES = {
    "read outside": ("select * from read_text('{secret}')", duckdb.PermissionException),
    "list outside": ("select * from glob('{root}/*')", duckdb.PermissionException),
    "copy outside": ("copy (select 1) to '{root}/leak.csv'", duckdb.PermissionException),
    "copy over an output": ("copy (select 1) to '{out}/portfolio_ridge.csv'", duckdb.PermissionException),
    "export": ("export database '{root}/export'", duckdb.PermissionException),
    "attach a file": ("attach '{root}/evil.duckdb' as evil", duckdb.PermissionException),
    "attach memory": ("attach ':memory:' as m", duckdb.Error),
    "install": ("install httpfs", duckdb.PermissionException),
    "load": ("load httpfs", duckdb.PermissionException),
    "create a table": ("create table t as select 1", duckdb.InvalidInputException),
    "create a secret": ("create secret s (type s3, key_id 'k', secret 'v')", duckdb.PermissionException),
    "enable external access": ("set enable_external_access = true", duckdb.InvalidInputException),
    "unlock the configuration": ("set lock_configuration = false", duckdb.InvalidInputException),
    "reset the lock": ("reset lock_configuration", duckdb.InvalidInputException),
    "widen allowed paths": ("set allowed_paths = ['/etc/passwd']", duckdb.InvalidInputException),
    "widen allowed directories": ("set allowed_directories = ['/']", duckdb.InvalidInputException),
    "auto-load extensions": ("set autoload_known_extensions = true", duckdb.InvalidInputException),
    "auto-install extensions": ("set autoinstall_known_extensions = true", duckdb.InvalidInputException),
    "community extensions": ("set allow_community_extensions = true", duckdb.InvalidInputException),
    "python replacement scans": ("set python_enable_replacements = true", duckdb.InvalidInputException),
    "temp directory": ("set temp_directory = '{root}/spill'", duckdb.InvalidInputException),
    "more memory": ("set memory_limit = '1TB'", duckdb.InvalidInputException),
    "more temporary disk": ("set max_temp_directory_size = '1PB'", duckdb.InvalidInputException),
}  # fmt: skip


@pytest.mark.parametrize("name", RAW_ESCAPES)
def test_duckdb_itself_refuses_each_escape_on_the_read_only_connection(engine_data, name):
    query, error = RAW_ESCAPES[name]
    out = engine_data["out"]
    sources = Sources.find(engine_data["cache"], out)
    database = ensure_database(out / DATABASE_FILE, sources)
    before = snapshot(engine_data["root"])
    con = open_read_only(database, sources)
    try:
        with pytest.raises(error):
            con.execute(query.format(**{k: str(v) for k, v in engine_data.items()})).fetchall()
    finally:
        con.close()
    assert snapshot(engine_data["root"]) == before


def test_the_engine_s_own_data_stays_readable(engine_data):
    for query in ("select count(*) as n from prices", "select count(*) as n from features",
                  "select count(*) as n from portfolio", "select count(*) as n from backtest",
                  "select count(*) as n from latest_portfolio"):  # fmt: skip
        outcome = sql(engine_data, query, "--format", "csv")
        assert outcome.code == 0, f"{query}: {outcome.stderr}"
        assert int(outcome.stdout.splitlines()[1]) > 0, query


@pytest.mark.parametrize("how", ["--format csv", "--out result.csv"])
def test_a_result_csv_cannot_hold_is_one_error_line(engine_data, how):
    option, value = how.split()
    if option == "--out":
        value = str(engine_data["root"] / value)
    outcome = sql(engine_data, "select [1, 2] as l, {'x': 1} as s", option, value)
    assert_one_error_line(outcome)


# --- issue 18, item 15: a row cap, fetched in batches; DuckDB's memory and disk bounded ---------
SQL_RSS_BOUND = 512 * 2**20  # an engine sql process: interpreter, Polars, DuckDB, 10k rows


def test_a_result_is_cut_at_max_rows_in_every_format(engine_data, tmp_path):
    query = "select range as n from range(25000)"
    table = sql(engine_data, query)
    assert table.code == 0, table.stderr
    assert table.stdout.rstrip().endswith("10000 rows x 1 columns (cut at --max-rows: the "
                                          "query has more)")  # fmt: skip
    assert "the result is cut at 10,000 rows (--max-rows)" in table.stderr
    csv = sql(engine_data, query, "--format", "csv")
    assert csv.stdout.splitlines()[1:] == [str(i) for i in range(10_000)]
    few = sql(engine_data, f"{query} order by n desc", "--format", "json", "--max-rows", "3")
    assert few.stdout.strip() == '[{"n":24999},{"n":24998},{"n":24997}]'
    out = tmp_path / "r.parquet"
    assert sql(engine_data, query, "--out", str(out), "--max-rows", "12345").code == 0
    assert pl.read_parquet(out)["n"].to_list() == list(range(12_345))
    whole = sql(engine_data, "select range as n from range(10000)")
    assert "cut" not in whole.stdout + whole.stderr and "10000 rows x 1 columns" in whole.stdout


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An archive whose prices x range(30) is 12M rows (~1 GB as a frame)."""
    from datetime import date

    from engine.data.synth import SynthSpec

    root = tmp_path_factory.mktemp("sql-wide")
    spec = SynthSpec(n_symbols=160, start=date(2015, 1, 1), end=date(2024, 12, 31), seed=3)
    data, out = tiny_archive(root / "data", spec), root / "out"
    done = invoke("-q", "data", "validate", "--data-path", str(data), "--output-path", str(out))
    assert done.code == 0, done.stderr
    return {"data": data, "out": out}


@pytest.mark.parametrize("query", ["select * from range(10000000000)",
                                   "select * from prices, range(30)"])  # fmt: skip
def test_a_huge_result_is_fetched_in_bounded_memory(wide_data, query):
    """A real process and a real DuckDB: ten billion rows, or 12M of a cross join, cost
    what 10,000 rows cost. The process is killed the moment it holds more than the bound
    (before the fix they grew to 23.8 and 3.6 GB)."""
    paths = ["--data-path", str(wide_data["data"]), "--output-path", str(wide_data["out"])]
    measured = run_with_rss_cap(["-q", "sql", query, "--format", "csv", *paths], SQL_RSS_BOUND)
    assert not measured.capped, f"engine sql passed {SQL_RSS_BOUND / 2**20:.0f} MiB resident"
    assert measured.outcome.code == 0, measured.outcome.stderr
    assert len(measured.outcome.stdout.splitlines()) == 10_001  # header + the cap
    assert measured.peak <= SQL_RSS_BOUND


@pytest.fixture
def small_budget(engine_data):
    """The read-only connection with 100 MiB of memory and of temporary disk."""
    out = engine_data["out"]
    sources = Sources.find(engine_data["cache"], out)
    con = open_read_only(ensure_database(out / DATABASE_FILE, sources), sources,
                         budget=(100 * 2**20, 100 * 2**20))  # fmt: skip
    yield con
    con.close()


@pytest.mark.parametrize(
    ("query", "says"),
    [("select string_agg(range::varchar, ',') from range(50000000)", "failed to allocate"),
     ("select count(distinct range) from range(100000000)", "failed to offload")],
    ids=["memory", "temporary disk"],
)  # fmt: skip
def test_a_query_past_duckdb_s_budget_is_one_line(small_budget, query, says):
    with pytest.raises(QueryError) as err:
        run_query(small_budget, query)
    message = str(err.value)
    assert "\n" not in message and says in message
    assert "gives DuckDB 100.0 MiB of memory and 100.0 MiB of temporary disk" in message


def test_a_result_past_the_memory_budget_is_one_line(small_budget):
    with pytest.raises(QueryError, match=r"^the result passes 50 MB of memory within its first"):
        run_query(small_budget, "select repeat('x', 1000000) from range(400)", max_bytes=50 * 2**20)


def test_every_connection_has_the_budget_of_the_memory_available(engine_data, monkeypatch):
    from engine.io import memory
    from engine.views import database

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)  # half for DuckDB, 4x disk
    out = engine_data["out"]
    sources = Sources.find(engine_data["cache"], out)
    settings = "select current_setting('memory_limit'), current_setting('max_temp_directory_size')"
    read_only = open_read_only(ensure_database(out / DATABASE_FILE, sources), sources)
    with read_only, database.connect(sources) as in_memory:
        for con in (read_only, in_memory):
            assert con.sql(settings).fetchall() == [("512.0 MiB", "2.0 GiB")]


def test_the_command_reports_duckdb_s_budget_in_one_line(engine_data, monkeypatch):
    from engine.io import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 200 * 2**20)
    outcome = sql(engine_data, "select string_agg(range::varchar, ',') from range(50000000)")
    assert_one_error_line(outcome, "Out of Memory Error", "gives DuckDB 128.0 MiB of memory")
