-- Labels (forward returns) and the date each becomes known, kept apart from the features.
-- fwd_ret_{h}d = Adj Close h rows later / Adj Close - 1; label_end_{h}d = that row's date.

create or replace view labels as
with feature_panel as (
    select * from feature_panel
),

final as (
    select
        date,
        symbol,
        fwd_ret_5d,
        fwd_ret_21d,
        fwd_ret_63d,
        label_end_5d,
        label_end_21d,
        label_end_63d
    from feature_panel
)

select * from final;
