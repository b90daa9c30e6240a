"""Every command README.md shows, run as written, in order, in a fresh clone.

One test per command of the README's ```bash blocks (``tests.readme_commands`` says what
a command is and how the two comment markers read). The clone is ``git clone`` of this
checkout plus its uncommitted changes to tracked files; its quickstart installs its own
``.venv/`` from the lock (uv's cache makes that quick). Servers are started on free ports
on 127.0.0.1 and probed: a UI must answer with MLflow's page and the engine's registered
models, a scoring server must answer the README's ``/invocations`` request with
predictions. Commands that run pytest are this suite, which CI runs (``.ci/run``); those
marked ``# needs Docker`` are left to tests/test_container.py and scripts/stack_e2e.sh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.readme_commands import NEEDS_DOCKER, Command, Terminal, readme_commands

REPO = Path(__file__).resolve().parents[1]
COMMANDS = readme_commands((REPO / "README.md").read_text())
CI_SCRIPT = REPO / ".ci" / "run"


def skip_reason(command: Command) -> str | None:
    if NEEDS_DOCKER in command.comment:
        return "needs Docker: the stack is checked by tests/test_container.py and stack_e2e.sh"
    words = command.program
    if words[:1] == ["pytest"] or words[:3] == ["python", "-m", "pytest"]:
        return "the test suite itself: CI runs it (.ci/run)"
    return None


def ci_command() -> str:
    (line,) = [ln for ln in CI_SCRIPT.read_text().splitlines() if ln.startswith("exec ")]
    return line.removeprefix("exec ").strip()


# --- the README's commands, as found ----------------------------------------------------
def test_the_readme_shows_commands_and_the_quickstart_is_what_ci_runs():
    assert len(COMMANDS) >= 10, [c.text for c in COMMANDS]
    codes = [c.code for c in COMMANDS]
    assert codes[:2] == ["python3 dev.py engine run --model ridge", ci_command()], codes[:2]
    assert "source .venv/bin/activate" in codes


def test_servers_are_probed_and_scoring_servers_have_a_request():
    servers = [c for c in COMMANDS if c.server]
    assert {path for _, path in (c.server for c in servers)} == {"/", "/invocations"}
    assert any(c.program[:1] == ["curl"] and "/invocations" in c.code for c in COMMANDS)


# --- the README's commands, run ---------------------------------------------------------
@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    """A shell in a fresh clone of this checkout (with its uncommitted tracked changes)."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the README's commands run in a clone of one")
    root = tmp_path_factory.mktemp("readme")
    clone = root / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    changes = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO, check=True,
                             capture_output=True).stdout  # fmt: skip
    if changes:
        subprocess.run(["git", "apply", "-"], cwd=clone, input=changes, check=True)
    shell = Terminal(clone, root / "logs")
    yield shell
    shell.stop()
    shutil.rmtree(clone, ignore_errors=True)  # its .venv/ and outputs: ~1.5 GB


def _predictions(output: str) -> list[float]:
    answer = json.loads(output[output.index("{") :])
    scores = answer["predictions"]
    assert scores and all(isinstance(s, float) for s in scores), answer
    return scores


def _probe_ui(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as page:
        assert page.status == 200 and b"<title>MLflow</title>" in page.read()
    search = f"{url}/ajax-api/2.0/mlflow/registered-models/search"
    with urllib.request.urlopen(search, timeout=30) as response:
        names = [m["name"] for m in json.loads(response.read()).get("registered_models", [])]
    assert "sp500-ridge" in names, f"the UI is not on the engine's store: {names}"


def _probe_scoring(shell: Terminal) -> None:
    requests = [c for c in COMMANDS if c.program[:1] == ["curl"] and "/invocations" in c.code]
    assert requests, "the README shows no request to /invocations"
    for request in requests:
        answered = shell.run(request.text)
        assert answered.returncode == 0, answered.output
        _predictions(answered.output)


def _execute(shell: Terminal, command: Command) -> None:
    if command.server:
        service = shell.start(command)
        if command.server[1] == "/invocations":
            _probe_scoring(shell)
        else:
            _probe_ui(service.url)
        assert service.proc.poll() is None, service.log_tail()
        return
    finished = shell.run(command.text)
    assert finished.returncode == 0, f"$ {command.text}\n{finished.output[-6000:]}"
    if command.program[:1] == ["curl"] and "/invocations" in command.code:
        _predictions(finished.output)


def _run_through(shell: Terminal, index: int) -> None:
    """Run the commands before ``index`` not run yet (a test selected alone), then it."""
    while shell.done <= index:
        if shell.failed is not None:
            pytest.skip(f"an earlier README command failed: {shell.failed}")
        command = COMMANDS[shell.done]
        shell.done += 1
        if skip_reason(command):
            continue
        try:
            _execute(shell, command)
        except BaseException:
            shell.failed = command.text.splitlines()[0]
            raise


def _id(command: Command) -> str:
    return command.code.splitlines()[0][:60]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[_id(c) for c in COMMANDS])
def test_readme_command(terminal: Terminal, index: int):
    reason = skip_reason(COMMANDS[index])
    if reason:
        pytest.skip(reason)
    _run_through(terminal, index)
