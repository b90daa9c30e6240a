-- Run output: the portfolio's target weights at every rebalance date, one file per model
-- (OUTPUT_PATH/holdings_<model>.csv, written by `engine run`), renamed and cast.

create or replace view portfolio as
with source as (
    select * from src_portfolio
),

renamed as (
    select
        regexp_extract(parse_filename(filename, true), '^[a-z]+_(.+)$', 1) as model,
        date::date as date,
        symbol::varchar as symbol,
        weight::double as weight,
        score::double as score
    from source
)

select * from renamed;
