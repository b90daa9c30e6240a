"""Qlib's Alpha158 factor set, generated from its groups and windows.

Names and definitions are Qlib's (``Alpha158DL.get_feature_config`` with its default
config: KBAR, the price group at window 0, the rolling groups at windows 5, 10, 20, 30,
60). ``VWAP0`` (``$vwap/$close``) is left out: the Kaggle archive has no VWAP. That gives
157 factors.
"""

from __future__ import annotations

WINDOWS = (5, 10, 20, 30, 60)
PRICE_FIELDS = ("OPEN", "HIGH", "LOW")  # Qlib's default also has VWAP: not in this archive

RANGE = "($high-$low+1e-12)"
KBAR = (
    ("KMID", "($close-$open)/$open", "body of the day's candle over the open"),
    ("KLEN", "($high-$low)/$open", "day's range over the open"),
    ("KMID2", f"($close-$open)/{RANGE}", "body over the range"),
    ("KUP", "($high-Greater($open, $close))/$open", "upper shadow over the open"),
    ("KUP2", f"($high-Greater($open, $close))/{RANGE}", "upper shadow over the range"),
    ("KLOW", "(Less($open, $close)-$low)/$open", "lower shadow over the open"),
    ("KLOW2", f"(Less($open, $close)-$low)/{RANGE}", "lower shadow over the range"),
    ("KSFT", "(2*$close-$high-$low)/$open", "close's shift in the range, over the open"),
    ("KSFT2", f"(2*$close-$high-$low)/{RANGE}", "close's shift in the range, over the range"),
)

_UP = "Greater($close-Ref($close, 1), 0)"
_DOWN = "Greater(Ref($close, 1)-$close, 0)"
_MOVE = "(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)"
_VUP = "Greater($volume-Ref($volume, 1), 0)"
_VDOWN = "Greater(Ref($volume, 1)-$volume, 0)"
_VMOVE = "(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)"
_WV = "Abs($close/Ref($close, 1)-1)*$volume"

# (group, template with {d} for the window, what it measures over the last d rows)
ROLLING = (
    ("ROC", "Ref($close, {d})/$close", "close d rows ago over today's close"),
    ("MA", "Mean($close, {d})/$close", "moving average over the close"),
    ("STD", "Std($close, {d})/$close", "std of the close over the close"),
    ("BETA", "Slope($close, {d})/$close", "slope of the close on time over the close"),
    ("RSQR", "Rsquare($close, {d})", "R^2 of the close on time"),
    ("RESI", "Resi($close, {d})/$close", "today's residual from that line over the close"),
    ("MAX", "Max($high, {d})/$close", "highest high over the close"),
    ("MIN", "Min($low, {d})/$close", "lowest low over the close"),
    ("QTLU", "Quantile($close, {d}, 0.8)/$close", "80% quantile of the close over the close"),
    ("QTLD", "Quantile($close, {d}, 0.2)/$close", "20% quantile of the close over the close"),
    ("RANK", "Rank($close, {d})", "percentile of today's close among the window's"),
    ("RSV", "($close-Min($low, {d}))/(Max($high, {d})-Min($low, {d})+1e-12)",
     "close's place between the lowest low and the highest high"),
    ("IMAX", "IdxMax($high, {d})/{d}", "position of the highest high (Aroon up)"),
    ("IMIN", "IdxMin($low, {d})/{d}", "position of the lowest low (Aroon down)"),
    ("IMXD", "(IdxMax($high, {d})-IdxMin($low, {d}))/{d}", "high's position minus low's"),
    ("CORR", "Corr($close, Log($volume+1), {d})", "correlation of close and log volume"),
    ("CORD", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), {d})",
     "correlation of price change and volume change"),
    ("CNTP", "Mean($close>Ref($close, 1), {d})", "share of up days"),
    ("CNTN", "Mean($close<Ref($close, 1), {d})", "share of down days"),
    ("CNTD", "Mean($close>Ref($close, 1), {d})-Mean($close<Ref($close, 1), {d})",
     "up days minus down days, as shares"),
    ("SUMP", f"Sum({_UP}, {{d}})/{_MOVE}", "gains over total moves (RSI-like)"),
    ("SUMN", f"Sum({_DOWN}, {{d}})/{_MOVE}", "losses over total moves"),
    ("SUMD", f"(Sum({_UP}, {{d}})-Sum({_DOWN}, {{d}}))/{_MOVE}", "gains minus losses, over moves"),
    ("VMA", "Mean($volume, {d})/($volume+1e-12)", "mean volume over today's"),
    ("VSTD", "Std($volume, {d})/($volume+1e-12)", "std of volume over today's"),
    ("WVMA", f"Std({_WV}, {{d}})/(Mean({_WV}, {{d}})+1e-12)",
     "volatility of volume-weighted absolute returns"),
    ("VSUMP", f"Sum({_VUP}, {{d}})/{_VMOVE}", "volume rises over total volume moves"),
    ("VSUMN", f"Sum({_VDOWN}, {{d}})/{_VMOVE}", "volume falls over total volume moves"),
    ("VSUMD", f"(Sum({_VUP}, {{d}})-Sum({_VDOWN}, {{d}}))/{_VMOVE}", "rises minus falls, over moves"),
)  # fmt: skip


def alpha158() -> list[tuple[str, str, str]]:
    """(name, expression, description) of every Alpha158 factor this archive supports, in
    Qlib's order (KBAR, price, then each rolling group over every window)."""
    price = [(f"{name}0", f"${name.lower()}/$close", f"today's {name.lower()} over the close")
             for name in PRICE_FIELDS]  # fmt: skip
    rolling = [(f"{group}{d}", template.format(d=d), f"{what}, last {d} rows")
               for group, template, what in ROLLING for d in WINDOWS]  # fmt: skip
    return [*KBAR, *price, *rolling]
