"""The pure research core: normalisation, splits, models, portfolio, backtest, metrics."""
