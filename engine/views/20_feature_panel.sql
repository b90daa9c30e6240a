-- The feature panel: per (symbol, date), every point-in-time feature and every label, in
-- one window pass over the symbol's history (a join of two windowed views costs more).
--
-- Features use rows dated <= date only. Windows are counted in rows of the symbol's own
-- history (partition by symbol, ordered by date) and every frame is explicit: "rows between
-- w - 1 preceding and current row" holds the last w rows including today. DuckDB computes
-- partial windows at the start of a partition, so a windowed value is kept only when its
-- window is full:
--   * history_rows >= w for windows of Adj Close, range and volume (never null in the cache);
--   * history_rows > w for windows of ret_1d, which is null on a symbol's first row;
--   * count(mkt_ret_1d) over the frame = w for the index returns, which are null on stock
--     dates the index lacks.
-- Labels look forward by construction (lead) and are kept apart: no feature reads them, and
-- the features and labels views below split the panel again.
-- Definitions match engine/features/__init__.py exactly (tests/test_sqlviews.py holds them to 1e-9).

create or replace view feature_panel as
with daily_returns as (
    select * from int_daily_returns
),

windowed as (
    select
        date,
        symbol,
        adj_close,
        history_rows,
        ret_1d,
        range_hl,
        volume,

        -- variance of the last 5, 21 and 63 daily log returns
        var_samp(ret_1d) over last_5 as ret_var_5,
        var_samp(ret_1d) over last_21 as ret_var_21,
        var_samp(ret_1d) over last_63 as ret_var_63,

        -- Adj Close w rows ago: null before the symbol's row w
        lag(adj_close, 21) over by_symbol as adj_lag_21,
        lag(adj_close, 63) over by_symbol as adj_lag_63,
        lag(adj_close, 126) over by_symbol as adj_lag_126,
        lag(adj_close, 252) over by_symbol as adj_lag_252,

        -- moving averages and the 252-row high of Adj Close
        avg(adj_close) over last_20 as adj_avg_20,
        avg(adj_close) over last_50 as adj_avg_50,
        avg(adj_close) over last_200 as adj_avg_200,
        max(adj_close) over last_252 as adj_max_252,

        -- intraday range and volume over the last 21 rows
        avg(range_hl) over last_21 as range_avg_21,
        avg(volume) over last_21 as volume_avg_21,
        var_samp(volume) over last_21 as volume_var_21,

        -- the symbol's and the index's returns over the last 63 rows
        count(mkt_ret_1d) over last_63 as mkt_n_63,
        var_samp(mkt_ret_1d) over last_63 as mkt_var_63,
        covar_samp(ret_1d, mkt_ret_1d) over last_63 as cov_63,

        -- labels: Adj Close and the date h rows later (null for the symbol's last h rows)
        lead(adj_close, 5) over by_symbol as adj_lead_5,
        lead(adj_close, 21) over by_symbol as adj_lead_21,
        lead(adj_close, 63) over by_symbol as adj_lead_63,
        lead(date, 5) over by_symbol as date_lead_5,
        lead(date, 21) over by_symbol as date_lead_21,
        lead(date, 63) over by_symbol as date_lead_63

    from daily_returns
    window
        by_symbol as (partition by symbol order by date),
        last_5 as (by_symbol rows between 4 preceding and current row),
        last_20 as (by_symbol rows between 19 preceding and current row),
        last_21 as (by_symbol rows between 20 preceding and current row),
        last_50 as (by_symbol rows between 49 preceding and current row),
        last_63 as (by_symbol rows between 62 preceding and current row),
        last_200 as (by_symbol rows between 199 preceding and current row),
        last_252 as (by_symbol rows between 251 preceding and current row)
),

full_windows as (
    select
        date,
        symbol,
        adj_close,
        history_rows,
        ret_1d,
        range_hl,
        volume,
        adj_lag_21,
        adj_lag_63,
        adj_lag_126,
        adj_lag_252,
        adj_lead_5,
        adj_lead_21,
        adj_lead_63,
        date_lead_5,
        date_lead_21,
        date_lead_63,
        case when history_rows > 5 then ret_var_5 end as ret_var_5,
        case when history_rows > 21 then ret_var_21 end as ret_var_21,
        case when history_rows > 63 then ret_var_63 end as ret_var_63,
        case when history_rows >= 20 then adj_avg_20 end as sma_20,
        case when history_rows >= 50 then adj_avg_50 end as sma_50,
        case when history_rows >= 200 then adj_avg_200 end as sma_200,
        case when history_rows >= 252 then adj_max_252 end as high_252,
        case when history_rows >= 21 then range_avg_21 end as range_avg_21,
        case when history_rows >= 21 then volume_avg_21 end as volume_avg_21,
        case when history_rows >= 21 then sqrt(volume_var_21) end as volume_sd_21,
        -- beta needs all 63 pairs: 63 stock returns and 63 index returns
        case when history_rows > 63 and mkt_n_63 = 63 then mkt_var_63 end as mkt_var_63,
        case when history_rows > 63 and mkt_n_63 = 63 then cov_63 end as cov_63
    from windowed
),

final as (
    select
        date,
        symbol,
        adj_close,
        history_rows,
        ret_1d,
        sqrt(ret_var_5) as vol_5d,
        sqrt(ret_var_21) as vol_21d,
        sqrt(ret_var_63) as vol_63d,
        adj_close / adj_lag_21 - 1 as mom_21d,
        adj_close / adj_lag_63 - 1 as mom_63d,
        adj_close / adj_lag_126 - 1 as mom_126d,
        adj_close / adj_lag_252 - 1 as mom_252d,
        adj_lag_21 / adj_lag_252 - 1 as mom_12_1,
        adj_close / sma_20 as px_sma20,
        adj_close / sma_50 as px_sma50,
        sma_50 / sma_200 as sma50_sma200,
        adj_close / high_252 as px_high252,
        range_hl,
        range_avg_21 as range_hl_21d,
        case when volume_sd_21 > 0 then (volume - volume_avg_21) / volume_sd_21 end as volume_z_21d,
        case when mkt_var_63 > 0 then cov_63 / mkt_var_63 end as beta_63d,
        case
            when mkt_var_63 > 0
                then sqrt(greatest(ret_var_63 - cov_63 * cov_63 / mkt_var_63, 0))
        end as idio_vol_63d,
        adj_lead_5 / adj_close - 1 as fwd_ret_5d,
        adj_lead_21 / adj_close - 1 as fwd_ret_21d,
        adj_lead_63 / adj_close - 1 as fwd_ret_63d,
        date_lead_5 as label_end_5d,
        date_lead_21 as label_end_21d,
        date_lead_63 as label_end_63d
    from full_windows
)

select * from final;
