-- Features: the point-in-time columns of the feature panel (DuckDB drops the label windows
-- from the plan when only these columns are read).

create or replace view features as
with feature_panel as (
    select * from feature_panel
),

final as (
    select * exclude (
        fwd_ret_5d, fwd_ret_21d, fwd_ret_63d, label_end_5d, label_end_21d, label_end_63d
    )
    from feature_panel
)

select * from final;
