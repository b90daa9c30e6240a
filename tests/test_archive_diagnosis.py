"""engine.data.archive.diagnosis: the error path reads files in blocks and names the same line.

The blocks are 16 MiB; here they are a few bytes, so a block boundary falls before, on
and after the offending byte, and the message must not change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import schema
from engine.data.archive import ArchiveError, diagnosis, load_archive
from tests.test_archive import cache_files, write_archive

BLOCKS = [1, 7, 64, 1 << 24]


def with_bad_byte(folder: Path, line: int, after: bytes) -> Path:
    """Put an invalid UTF-8 byte in stocks ``line`` (1-based) just after ``after``."""
    path = folder / schema.STOCKS_FILE
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(after, after + b"\xff", 1)
    path.write_bytes(b"\n".join(lines))
    return folder


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom_crlf"])
@pytest.mark.parametrize(
    ("line", "after", "column"), [(6, b"AA", "Symbol"), (80, b",CCC,", "Adj Close")]
)
def test_invalid_utf8_names_line_and_column_whatever_the_block(
    tmp_path, monkeypatch, block, bom, line, after, column
):
    monkeypatch.setattr(diagnosis, "_BLOCK_BYTES", block)
    newline = "\r\n" if bom else "\n"
    folder = with_bad_byte(write_archive(tmp_path / "d", newline=newline, bom=bom), line, after)
    with pytest.raises(ArchiveError) as err:
        load_archive(folder, tmp_path / "cache")
    assert str(err.value) == (
        f"{schema.STOCKS_FILE}: line {line}, column '{column}': invalid UTF-8 byte"
    )
    assert cache_files(tmp_path / "cache") == []


@pytest.mark.parametrize("block", BLOCKS)
def test_lines_of_quoted_records_whatever_the_block(tmp_path, monkeypatch, block):
    monkeypatch.setattr(diagnosis, "_BLOCK_BYTES", block)
    path = tmp_path / "f.csv"
    path.write_text('a,b\n1,"x\ny"\n2,z\n3,"p\n\nq"\n4,w\n')
    assert diagnosis.lines_of(path, [0, 1, 2, 3]) == [2, 4, 5, 8]
