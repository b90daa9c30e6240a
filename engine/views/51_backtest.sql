-- Run output: the daily backtest, one file per model (OUTPUT_PATH/equity_<model>.csv,
-- written by `engine run`), renamed and cast. Returns are simple daily returns; the index
-- is a price index (no dividends) while the portfolio and the universe include dividends.

create or replace view backtest as
with source as (
    select * from src_backtest
),

renamed as (
    select
        regexp_extract(parse_filename(filename, true), '^[a-z]+_(.+)$', 1) as model,
        date::date as date,
        gross::double as gross_return,
        net::double as net_return,
        turnover::double as turnover,
        index::double as index_return,
        universe::double as universe_return,
        equity_gross::double as equity_gross,
        equity_net::double as equity_net,
        equity_index::double as equity_index,
        equity_universe::double as equity_universe
    from source
)

select * from renamed;
