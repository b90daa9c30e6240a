-- Daily returns: the base columns every feature window reads.
-- mkt_ret_1d is the index's log return in index-file (date) order, joined by date; it is
-- null on stock dates the index lacks.

create or replace view int_market_returns as
with index_levels as (
    select * from index
),

market_returns as (
    select
        date,
        ln(sp500 / lag(sp500) over (order by date)) as mkt_ret_1d
    from index_levels
)

select * from market_returns;


create or replace view int_daily_returns as
with daily_prices as (
    select * from prices
),

market_returns as (
    select * from int_market_returns
),

stock_returns as (
    select
        date,
        symbol,
        adj_close,
        volume,
        row_number() over by_symbol as history_rows,
        ln(adj_close / lag(adj_close) over by_symbol) as ret_1d,
        (high - low) / close as range_hl
    from daily_prices
    window by_symbol as (partition by symbol order by date)
),

joined as (
    select
        stock_returns.*,
        market_returns.mkt_ret_1d
    from stock_returns
    left join market_returns using (date)
)

select * from joined;
