"""Using the champion: ``engine predict`` on a SQLite store and on a real server, and
``mlflow models serve`` of the champion answering with the same scores."""

from __future__ import annotations

import json
import urllib.request
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from engine.cli.predict import model_spec
from engine.config import Paths, RunSpec
from engine.data.sources import resolve_archive
from engine.lifecycle import registry
from engine.lifecycle.tracking import store
from engine.pipeline.predict import features_on
from tests import mlflow_server
from tests.mlflow_server import client_for, engine, run_args, sqlite_uri

pytest_plugins = ("tests.conftest_mlflow",)  # fixtures: mlflow_service, server_uri, model_name
pytestmark = pytest.mark.slow


def _last_rebalance(out: Path) -> date:
    return pl.read_csv(out / "holdings_ridge.csv", try_parse_dates=True)["date"].max()


def _same_rows(a: Path, b: Path) -> None:
    left, right = (pl.read_csv(p).sort("symbol") for p in (a, b))
    assert left.columns == right.columns == ["date", "symbol", "name", "sector", "weight", "score"]
    assert left.drop("score").equals(right.drop("score")), (left, right)
    # the registered sklearn model and the run's own scorer differ in summation order only
    assert left["score"].to_list() == pytest.approx(right["score"].to_list(), rel=1e-12)


@pytest.fixture(scope="module")
def champion(small_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store whose sp500-ridge champion is a run on the small archive."""
    out = tmp_path_factory.mktemp("champion")
    result = engine(*run_args(small_archive, out))
    assert result.exit_code == 0, result.output
    assert "promotion: promoted" in result.output
    return out


def test_predict_at_the_last_rebalance_reproduces_the_run_portfolio(
    champion: Path, small_archive: Path
):
    day = _last_rebalance(champion)
    result = engine("predict", "--as-of", str(day), "--data-path", str(small_archive),
                    "--output-path", str(champion))  # fmt: skip
    assert result.exit_code == 0, result.output
    written = champion / f"predict_ridge_{day}.csv"
    _same_rows(written, champion / "portfolio_ridge.csv")


def test_predict_uses_the_last_trading_day_on_or_before_the_date(
    champion: Path, small_archive: Path
):
    result = engine("predict", "--as-of", "2019-01-06", "--data-path", str(small_archive),
                    "--output-path", str(champion), "--top-stocks", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 names on 2018-12-31" in result.output  # a Sunday after the data's last day
    assert pl.read_csv(champion / "predict_ridge_2018-12-31.csv").height == 3


def test_predict_before_the_champion_was_fitted_is_refused(champion: Path, small_archive: Path):
    """The champion was fitted at the last rebalance on labels known then: a portfolio for an
    earlier day from it would be scored with knowledge of that day's future."""
    fitted = _last_rebalance(champion)
    result = engine("predict", "--as-of", "2017-06-30", "--data-path", str(small_archive),
                    "--output-path", str(champion))  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("engine: error:")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0]
    assert f"fitted at the {fitted} rebalance" in result.stderr
    assert "scoring 2017-06-30 with it would use the future" in result.stderr
    assert not (champion / "predict_ridge_2017-06-30.csv").exists()


def test_predict_refuses_a_factor_file_edited_after_the_run(small_archive: Path, tmp_path: Path):
    """The model's factors are compared by their parsed expressions: other spacing is the
    same factor, another window under the same name is refused in one line."""
    factors = tmp_path / "factors.toml"
    factors.write_text('mom_10 = "$close / Ref($close, 10) - 1"\nhl = "($high - $low) / $close"\n')
    out = tmp_path / "out"
    result = engine(*run_args(small_archive, out, "--features", str(factors)))
    assert result.exit_code == 0, result.output
    day = str(_last_rebalance(out))
    predict = ("predict", "--as-of", day, "--model-uri", "models:/sp500-ridge/1",
               "--data-path", str(small_archive), "--output-path", str(out))  # fmt: skip
    factors.write_text('mom_10 = "$close/Ref($close,10)-1"\nhl = "($high-$low)/$close"\n')
    accepted = engine(*predict)
    assert accepted.exit_code == 0, accepted.output
    factors.write_text('mom_10 = "$close / Ref($close, 12) - 1"\nhl = "($high - $low) / $close"\n')
    result = engine(*predict)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("engine: error:")
    assert "factor 'mom_10' is now '$close / Ref($close, 12) - 1'" in result.stderr


def test_predict_offers_only_models_with_a_fitted_scorer(champion: Path):
    result = engine("predict", "--as-of", "2018-12-31", "--model", "momentum")
    assert result.exit_code == 2 and "'momentum' is not one of" in result.stderr


def test_predict_before_the_first_scoreable_day_says_so(champion: Path, small_archive: Path):
    result = engine("predict", "--as-of", "2001-01-01", "--data-path", str(small_archive),
                    "--output-path", str(champion))  # fmt: skip
    assert result.exit_code == 1
    assert "no scoreable day on or before 2001-01-01 (first: 2014-01-02)" in result.stderr


def test_predict_without_a_champion_says_so(champion: Path, small_archive: Path):
    result = engine("predict", "--as-of", "2018-06-01", "--model", "lasso",
                    "--data-path", str(small_archive), "--output-path", str(champion))  # fmt: skip
    assert result.exit_code == 1
    assert "cannot load models:/sp500-lasso@champion" in result.stderr


def test_served_champion_answers_with_the_scores_of_engine_predict(
    champion: Path, small_archive: Path
):
    uri = sqlite_uri(champion)
    day = _last_rebalance(champion)
    predicted = engine("predict", "--as-of", str(day), "--data-path", str(small_archive),
                       "--output-path", str(champion))  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    held = pl.read_csv(champion / f"predict_ridge_{day}.csv")
    # the feature frame engine predict scored, built by the same functions
    settings = RunSpec(paths=Paths(data=small_archive, output=champion))
    store.configure(settings)
    scorer = registry.load_scorer(store.open_client(settings), "models:/sp500-ridge@champion")
    model_settings = model_spec(settings, scorer.spec, {})
    archive = resolve_archive(model_settings.paths)
    frame = features_on(archive, model_settings, scorer.features, day)
    body = {"dataframe_split": frame.select(scorer.features).to_pandas().to_dict(orient="split")}
    service = mlflow_server.start_model_server(
        "models:/sp500-ridge@champion", uri, champion / "serve"
    )
    try:
        request = urllib.request.Request(
            f"{service.url}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
    finally:
        service.stop()
    assert len(served) == frame.height
    assert served == pytest.approx(list(scorer.score(frame)), rel=1e-12, abs=1e-15)
    by_symbol = dict(zip(frame["symbol"].to_list(), served, strict=True))
    for symbol, score in held.select("symbol", "score").iter_rows():
        assert by_symbol[symbol] == pytest.approx(score, rel=1e-12, abs=1e-15)


def test_predict_against_a_remote_server(
    small_archive: Path, tmp_path: Path, server_uri: str, model_name: str
):
    remote = ("--tracking-uri", server_uri, "--registered-model", model_name)
    ran = engine(*run_args(small_archive, tmp_path, *remote))
    assert ran.exit_code == 0, ran.output
    day = _last_rebalance(tmp_path)
    result = engine("predict", "--as-of", str(day), "--data-path", str(small_archive),
                    "--output-path", str(tmp_path / "p"), *remote)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"models:/{model_name}@champion" in result.output
    _same_rows(tmp_path / "p" / f"predict_ridge_{day}.csv", tmp_path / "portfolio_ridge.csv")
    assert registry.aliases(client_for(server_uri), model_name)["champion"] == "1"
