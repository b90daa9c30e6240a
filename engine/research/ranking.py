"""Exact per-date ranks of a column sorted by date, in numpy: the kernel behind
``crosssection.rank_frame``.

Hand-written for speed: with Polars' ``rank().over(date)`` instead, a cold ``engine run``
(the model frame build) takes about twice as long, and longer with more features
(docs/benchmarks.md, "Issue 14: the data plane on libraries, before and after").

The definition is the Polars expression ``crosssection.rank_to_unit``: the average rank
within the date mapped to [-0.5, 0.5], ``(rank - 1) / (n - 1) - 0.5`` over the date's n
non-null values; this kernel gives the same values to the bit (tested). How:

- The rows of a date-sorted column form blocks of consecutive dates with the same number
  of rows (``DateBlocks``): each block is a (dates x rows) matrix without a copy, sized to
  stay in the L2 cache, sorted row-wise by one ``np.sort`` call.
- ``np.argsort`` is much slower than ``np.sort`` (numpy's SIMD sort) on these rows. So each
  value becomes an order-preserving int64 key whose lowest bits are replaced by the value's
  row in the block: sorting the keys sorts the values and carries the rows along.
- Truncated keys can collide for values a relative ~3e-11 apart. Any block with a
  collision (in practice: ties) has its order checked against the values; if it is wrong
  the block is sorted again by ``np.argsort``. The ranks are always exact.
- Each rank becomes its unit value through a table per non-null count n (the same
  float64 arithmetic as the expression), and one scatter writes it to the value's row.
- The column is read in place (Arrow values and validity bitmap), and each thread's
  buffers are reused block after block and column after column: fresh memory costs page
  faults, which cost as much as the sort itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANK_BLOCK_ROWS = 1 << 17  # rows a block: its keys (1 MiB of int64) stay in the L2 cache

_SIGN_BITS = np.int64(2**63 - 1)
_INF_KEY = np.int64(0x7FF0000000000000)  # the key of +inf: finite values' keys are below
_MIN_FINITE_KEY = np.int64(-(2**63) + 2**52)  # the key of -DBL_MAX: -inf's and -NaN's are below


@dataclass(frozen=True)
class DateBlocks:
    """The rows of a frame sorted by date, as blocks of consecutive dates that have the
    same number of rows: each block is a (dates x rows per date) matrix without copying.

    Attributes
    ----------
    blocks : (first row, end row, dates, rows per date) of each block, in row order; a
        block holds at most ``RANK_BLOCK_ROWS`` rows, or one date.
    """

    blocks: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def of(cls, days: np.ndarray) -> DateBlocks | None:
        """The layout of ``days`` (one integer per row, e.g. days since the epoch), or None
        unless they are sorted."""
        if np.any(days[1:] < days[:-1]):
            return None
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        sizes = np.diff(np.r_[starts, len(days)])
        runs = np.flatnonzero(np.r_[True, sizes[1:] != sizes[:-1]])  # first date of each run
        blocks = []
        for a, b in zip(runs, np.r_[runs[1:], len(sizes)], strict=True):
            lo, width = int(starts[a]), int(sizes[a])
            step = max(1, RANK_BLOCK_ROWS // width)
            for first in range(a, b, step):
                count = min(step, b - first)
                start = lo + (first - a) * width
                blocks.append((start, start + count * width, count, width))
        return cls(tuple(blocks))

    @property
    def largest(self) -> int:
        """Rows of the largest block."""
        return max((hi - lo for lo, hi, _, _ in self.blocks), default=0)


@dataclass(frozen=True)
class NullBits:
    """Where a column's nulls are, as Arrow keeps them: a validity bitmap (1 = a value,
    least significant bit first) whose bit ``offset`` is the column's first row.

    Attributes
    ----------
    bitmap : uint8, the bitmap's bytes (read, never copied whole).
    offset : the bit of the first row.
    count : the number of nulls.
    """

    bitmap: np.ndarray
    offset: int
    count: int

    def of_rows(self, lo: int, hi: int) -> np.ndarray:
        """Null or not, of rows lo to hi - 1 (bool)."""
        first, last = self.offset + lo, self.offset + hi - 1
        bits = np.unpackbits(self.bitmap[first >> 3 : (last >> 3) + 1], bitorder="little")
        return bits[first & 7 : (first & 7) + hi - lo] == 0


def unit_ranks(
    values: np.ndarray, nulls: NullBits | None, blocks: DateBlocks, out: np.ndarray,
    keep_nulls: bool, scratch: Scratch | None = None,
) -> bool:  # fmt: skip
    """Write ``rank_to_unit`` of ``values`` within each date into ``out``; False (``out``
    then holds nothing usable) when ``values`` holds NaN or infinities besides its nulls.

    Parameters
    ----------
    values : float64, one per row, sorted by date as ``blocks`` says; what a null row
        holds is ignored (read zero-copy from Arrow, it can be anything).
    nulls : the null rows, or None when there are none.
    out : float32 or float64, as long as ``values``. A null row gets NaN with
        ``keep_nulls``, else 0.0 (the cross-sectional centre, as ``fill_null(0.0)``).
    scratch : buffers to reuse (one per thread), from ``Scratch.of(blocks, out.dtype)``.
    """
    if scratch is None or scratch.dtype != out.dtype or scratch.keys.size < blocks.largest:
        scratch = Scratch.of(blocks, out.dtype)
    fill = np.nan if keep_nulls else 0.0
    for lo, hi, dates, width in blocks.blocks:
        matrix = scratch.values[: hi - lo].reshape(dates, width)
        gaps = _block_values(values, nulls, lo, hi, matrix)
        keys, bits = _sorted_keys(matrix, scratch)
        n = None if gaps is None else width - gaps.sum(axis=1, dtype=np.int32)
        if not _all_finite(keys, n):
            return False
        collided = _collided(keys, bits, n, scratch)
        taken = keys.ravel()
        taken &= np.int64((1 << bits) - 1)  # each sorted value's row in the block
        ties = None
        if collided:  # rare but for ties: check the order against the values
            ordered = matrix.ravel()[taken].reshape(dates, width)
            if np.any(ordered[:, 1:] < ordered[:, :-1]):  # truncation misordered: exact sort
                order = np.argsort(matrix, axis=1)
                taken[:] = (order + scratch.rows[:dates, None] * width).ravel()
                ordered = np.take_along_axis(matrix, order, axis=1)
            ties = ordered[:, 1:] == ordered[:, :-1]  # NaN (a null) is never equal
            ties = ties if ties.any() else None
        out[lo:hi][taken] = _unit_values(n, dates, width, ties, fill, scratch).ravel()
    return True


class Scratch:
    """Buffers for the largest block of ``blocks``, reused block after block and column
    after column by one thread: fresh memory costs page faults. ``values`` holds the
    block's values (NaN at the nulls), ``keys`` their sorted keys."""

    def __init__(self, rows: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.keys = np.empty(rows, np.int64)
        self.spare = np.empty(rows, np.int64)
        self.values = np.empty(rows, np.float64)
        self.close = np.empty(max(rows - 1, 0), bool)
        self.units = np.empty(rows, dtype)
        self.rows = np.arange(rows, dtype=np.int64)

    @classmethod
    def of(cls, blocks: DateBlocks, dtype: np.dtype) -> Scratch:
        return cls(blocks.largest, dtype)


def _block_values(
    values: np.ndarray, nulls: NullBits | None, lo: int, hi: int, out: np.ndarray
) -> np.ndarray | None:
    """Rows lo to hi - 1 of ``values`` + 0.0 (-0.0 becomes 0.0, equal as floats) into
    ``out`` (dates x width), NaN at the nulls; the nulls' mask, or None if there are none."""
    np.add(values[lo:hi], 0.0, out=out.reshape(-1))
    gaps = None if nulls is None else nulls.of_rows(lo, hi)
    if gaps is None or not gaps.any():
        return None
    np.copyto(out.reshape(-1), np.nan, where=gaps)
    return gaps.reshape(out.shape)


def _sorted_keys(matrix: np.ndarray, scratch: Scratch) -> tuple[np.ndarray, int]:
    """``matrix``'s rows as sorted order-preserving int64 keys (in ``scratch.keys``) whose
    lowest bits (how many: returned) hold each value's row in the block.

    Float keys would need fewer operations, but numpy's float sort rewrites NaN (the
    nulls) and so loses the rows they carry.
    """
    bits = max(int(matrix.size - 1).bit_length(), 1)
    ints = matrix.view(np.int64)
    keys = scratch.keys[: matrix.size].reshape(matrix.shape)
    sign = np.right_shift(ints, 63, out=scratch.spare[: matrix.size].reshape(matrix.shape))
    sign &= _SIGN_BITS
    np.bitwise_xor(ints, sign, out=keys)  # negatives reversed: float order = key order
    keys &= np.int64(-(1 << bits))
    keys |= scratch.rows[: matrix.size].reshape(matrix.shape)
    keys.sort(axis=1)
    return keys, bits


def _all_finite(keys: np.ndarray, n: np.ndarray | None) -> bool:
    """Whether the values (not the nulls) of the sorted dates are finite: the smallest key
    of each date is above -inf's, and its largest non-null key below +inf's (+inf and NaN
    sort after every finite value, among the nulls)."""
    if keys[:, 0].min() < _MIN_FINITE_KEY:  # -inf or a negative NaN
        return False
    if n is None:
        return bool(keys[:, -1].max() < _INF_KEY)
    some = np.flatnonzero(n)
    return bool(np.all(keys[some, n[some] - 1] < _INF_KEY))


def _collided(keys: np.ndarray, bits: int, n: np.ndarray | None, scratch: Scratch) -> bool:
    """Whether two finite neighbours of a sorted date have equal truncated keys. All nulls
    share one truncated key, so each date's nulls - 1 null neighbours are discounted, as
    are the pairs that straddle two dates (compared on the flat array for speed)."""
    flat = keys.view(np.uint64).ravel()
    xor = np.bitwise_xor(flat[1:], flat[:-1], out=scratch.spare.view(np.uint64)[: flat.size - 1])
    same = np.count_nonzero(np.less(xor, np.uint64(1 << bits), out=scratch.close[: xor.size]))
    ints = keys.view(np.uint64)
    straddle = np.count_nonzero((ints[1:, 0] ^ ints[:-1, -1]) < np.uint64(1 << bits))
    null_pairs = 0 if n is None else int(np.maximum(keys.shape[1] - n - 1, 0).sum())
    return same - straddle - null_pairs > 0


def _unit_values(
    n: np.ndarray | None, dates: int, width: int, ties: np.ndarray | None, fill: float,
    scratch: Scratch,
) -> np.ndarray:  # fmt: skip
    """The unit value at each sorted position of each date: ``(rank - 1) / (n - 1) - 0.5``
    for the n non-null values, 0.0 when n == 1, ``fill`` for the nulls (sorted last)."""
    units = scratch.units[: dates * width].reshape(dates, width)
    counts = np.full(dates, width) if n is None else n
    present = np.bincount(counts, minlength=width + 1) > 0  # one row per distinct n
    table = _scaled(np.arange(width, dtype=np.float64), np.flatnonzero(present), fill)
    np.take(table.astype(units.dtype), np.cumsum(present)[counts] - 1, axis=0, out=units)
    if ties is not None:  # few: each run of equal values gets its average position
        first, last, pairs, run = _tie_runs(ties)
        row = first // width
        tied = ((first + last) / 2 - row * width) / (counts[row] - 1).astype(np.float64) - 0.5
        flat = units.ravel()
        flat[pairs] = flat[pairs + 1] = tied.astype(units.dtype)[run]
    return units


def _tie_runs(ties: np.ndarray) -> tuple[np.ndarray, ...]:
    """Runs of equal sorted values: (first, last) flat position of each run in the (dates x
    width) block, and for each tied pair (positions p and p + 1, ``pairs``) its run."""
    width = ties.shape[1] + 1
    found = np.flatnonzero(ties)
    pairs = found + found // (width - 1)  # (dates x width - 1) -> (dates x width) positions
    starts = np.r_[True, pairs[1:] != pairs[:-1] + 1]
    ends = np.r_[starts[1:], True]
    return pairs[starts], pairs[ends] + 1, pairs, np.cumsum(starts) - 1


def _scaled(positions: np.ndarray, counts: np.ndarray, fill: float) -> np.ndarray:
    """``positions / (n - 1) - 0.5`` per row of n, with ``rank_to_unit``'s arithmetic."""
    width = positions.shape[-1]
    unit = positions / (np.maximum(counts, 2) - 1).astype(np.float64)[:, None] - 0.5
    valid = np.arange(width) < counts[:, None]
    return np.where(valid & (counts > 1)[:, None], unit, np.where(valid, 0.0, fill))
