"""The shell commands of a README, and a terminal that runs them as a user types them.

A command is a line of a ```bash (or sh, shell) block, with its continuations (a trailing
backslash, or a quote still open at the end of the line). Other blocks (plain ```, sql)
are not commands. A trailing comment may mark a command:

- ``# needs Docker``: not run here (the container stack has tests of its own);
- ``# http://127.0.0.1:<port>[/path] (Ctrl-C stops it)``: a server. The terminal starts it
  in the background on a free port instead (``--port`` given), waits for ``/health``, and
  sends later commands' ``127.0.0.1:<port>`` to it.

The terminal runs each command in bash with the environment variables and folder the
previous command left (``source .venv/bin/activate`` and ``export`` carry over, as in one
shell), starting from a user's environment: no virtualenv active, no engine or MLflow
variables.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.mlflow_server import Service, free_port

SHELL_BLOCKS = ("bash", "sh", "shell")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SERVER = re.compile(r"http://127\.0\.0\.1:(?P<port>\d+)(?P<path>/\S*)?")
PORT_FLAG = re.compile(r"\s--port[= ]\d+")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>\w+)\1")  # a here-document's end word
NEEDS_DOCKER = "needs Docker"
USER_UNSET = ("DATA_PATH", "OUTPUT_PATH", "CACHE_PATH", "MODEL_TYPE", "TOP_STOCKS",
              "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT")  # fmt: skip
COMMAND_TIMEOUT_S = 1200.0  # the first `dev.py` call installs the environment


@dataclass(frozen=True)
class Command:
    """One command of the README: its text as shown, and the part before its comment."""

    text: str
    code: str
    comment: str

    @property
    def server(self) -> tuple[int, str] | None:
        """(README port, URL path) when the command is a server that runs until Ctrl-C."""
        found = SERVER.search(self.comment)
        if found is None or "Ctrl-C" not in self.comment:
            return None
        return int(found["port"]), found["path"] or "/"

    @property
    def program(self) -> list[str]:
        """The words of the command, after a leading ``python3 dev.py``."""
        words = shlex.split(self.code)
        return words[2:] if words[:2] in (["python3", "dev.py"], ["python", "dev.py"]) else words


def split_comment(text: str) -> tuple[str, str]:
    """(code, comment) of a shell command: the comment starts at an unquoted ``#`` that
    begins a word."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


def complete(text: str) -> bool:
    """True if ``text`` is a whole command: no open quote, no trailing backslash."""
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def block_commands(body: str) -> list[Command]:
    """The commands of one shell block, skipping blank lines and comment lines. A command
    with a here-document (``<<'WORD'``) takes the lines up to ``WORD`` with it."""
    commands, pending, until = [], "", None
    for line in body.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if until is not None:
            if line.strip() == until:
                commands.append(Command(pending, pending, ""))
                pending, until = "", None
            continue
        if complete(pending):
            here = HEREDOC.search(split_comment(pending)[0])
            if here is not None:
                until = here["word"]
                continue
            commands.append(Command(pending, *split_comment(pending)))
            pending = ""
    if pending:
        raise ValueError(f"unterminated command in a README block: {pending!r}")
    return commands


def readme_commands(markdown: str) -> list[Command]:
    """Every command of the markdown's shell blocks, in order."""
    return [
        command
        for block in FENCE.finditer(markdown)
        if block["lang"] in SHELL_BLOCKS
        for command in block_commands(block["body"])
    ]


def user_environment() -> dict[str, str]:
    """This process's environment as a user's shell has it: no virtualenv on PATH or
    active, no engine or MLflow settings; MLflow's telemetry off (no network here)."""
    env = {k: v for k, v in os.environ.items()
           if k not in USER_UNSET and not k.startswith(("MLFLOW_", "PYTEST_"))}  # fmt: skip
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(d for d in path if not (Path(d).parent / "pyvenv.cfg").exists())
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


@dataclass
class Finished:
    """What a command printed, and its exit status."""

    returncode: int
    output: str


class Terminal:
    """One shell session in ``folder``: commands in order, servers in the background."""

    def __init__(self, folder: Path, logs: Path) -> None:
        self.cwd, self.logs = folder, logs
        self.env = user_environment()
        self.servers: dict[int, Service] = {}  # README port -> the server started for it
        self.done = 0  # commands of the list run so far (or skipped)
        self.failed: str | None = None  # the first line of a command that failed
        logs.mkdir(parents=True, exist_ok=True)

    def localised(self, text: str) -> str:
        """``text`` with each running server's README port replaced by its real port."""
        for port, service in self.servers.items():
            real = service.url.rsplit(":", 1)[1]
            text = re.sub(rf"\b(127\.0\.0\.1|localhost):{port}\b", f"127.0.0.1:{real}", text)
        return text

    def run(self, text: str) -> Finished:
        """Run ``text`` in bash, then keep the environment and folder it leaves."""
        state = self.logs / "state"
        script = (f"{self.localised(text)}\n__readme_rc=$?\n"
                  f"pwd > {state}.cwd; env -0 > {state}.env; exit $__readme_rc\n")  # fmt: skip
        proc = subprocess.Popen(["bash", "-c", script], cwd=self.cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return Finished(-1, f"{output}\n(timed out after {COMMAND_TIMEOUT_S} s)")
        if Path(f"{state}.env").exists():
            self.cwd = Path(Path(f"{state}.cwd").read_text().strip())
            pairs = Path(f"{state}.env").read_text().split("\0")
            self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        return Finished(proc.returncode, output)

    def start(self, command: Command) -> Service:
        """Start a server command on a free port, in place of any server on its README
        port; wait until it answers ``/health``."""
        readme_port, _ = command.server
        self.stop(readme_port)
        port = free_port()
        code = f"{PORT_FLAG.sub('', self.localised(command.code))} --port {port}"
        log = self.logs / f"server-{readme_port}-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", "-c", f"exec {code}"], cwd=self.cwd, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        service = Service(proc, f"http://127.0.0.1:{port}", log).wait_healthy()
        self.servers[readme_port] = service
        return service

    def stop(self, readme_port: int | None = None) -> None:
        """Stop the server of a README port, or every server."""
        ports = list(self.servers) if readme_port is None else [readme_port]
        for port in ports:
            if port in self.servers:
                self.servers.pop(port).stop()
