-- Run output: the holdings at the last rebalance, one file per model
-- (OUTPUT_PATH/portfolio_<model>.csv, written by `engine run`), renamed and cast.

create or replace view latest_portfolio as
with source as (
    select * from src_latest_portfolio
),

renamed as (
    select
        regexp_extract(parse_filename(filename, true), '^[a-z]+_(.+)$', 1) as model,
        date::date as date,
        symbol::varchar as symbol,
        name::varchar as name,
        sector::varchar as sector,
        weight::double as weight,
        score::double as score
    from source
)

select * from renamed;
