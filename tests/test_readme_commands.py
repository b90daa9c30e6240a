"""How README commands are found: blocks, continuations, comments, markers."""

from __future__ import annotations

from tests.readme_commands import block_commands, readme_commands, split_comment

MARKDOWN = """
Text with `engine inline` that is not a command.

```bash
source .venv/bin/activate   # the environment
# a comment line
engine run \\
  --model ridge
engine ui                   # http://127.0.0.1:5000 (Ctrl-C stops it)
```

```
$ engine run --data-path broken/
```

```sql
select 1;
```

```sh
curl -s http://127.0.0.1:5001/invocations -d '{
  "a": "#not a comment"
}'   # request
docker compose up           # needs Docker
cat > f.toml <<'TOML'
a = "$close"  # "not a command"

TOML
```
"""


def test_only_shell_blocks_hold_commands_with_their_continuations():
    codes = [c.code for c in readme_commands(MARKDOWN)]
    assert codes == [
        "source .venv/bin/activate",
        "engine run \\\n  --model ridge",
        "engine ui",
        'curl -s http://127.0.0.1:5001/invocations -d \'{\n  "a": "#not a comment"\n}\'',
        "docker compose up",
        'cat > f.toml <<\'TOML\'\na = "$close"  # "not a command"\n\nTOML',
    ]


def test_a_server_is_a_command_with_its_address_and_ctrl_c():
    commands = readme_commands(MARKDOWN)
    assert [c.server for c in commands] == [None, None, (5000, "/"), None, None, None]
    assert commands[-2].comment == "needs Docker" and commands[-1].comment == ""


def test_a_comment_starts_at_an_unquoted_hash_that_begins_a_word():
    assert split_comment("echo a#b 'c # d' # e") == ("echo a#b 'c # d'", "e")
    assert split_comment('echo "x" #') == ('echo "x"', "")


def test_program_words_follow_dev_py():
    (command,) = block_commands('python3 dev.py pytest -m "not slow"   # fast tier')
    assert command.program == ["pytest", "-m", "not slow"]
