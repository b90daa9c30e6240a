-- Staging: the validated Parquet cache, renamed and cast; nothing else.
-- src_prices, src_index and src_companies are bound to the cache files by engine.views.database
-- (through DuckDB's relational API, so no path is ever pasted into SQL text).

create or replace view prices as
with source as (
    select * from src_prices
),

renamed as (
    select
        date::date as date,
        symbol::varchar as symbol,
        adj_close::double as adj_close,
        close::double as close,
        high::double as high,
        low::double as low,
        open::double as open,
        volume::double as volume
    from source
)

select * from renamed;


create or replace view index as
with source as (
    select * from src_index
),

renamed as (
    select
        date::date as date,
        sp500::double as sp500
    from source
)

select * from renamed;


create or replace view companies as
with source as (
    select * from src_companies
),

renamed as (
    select
        symbol::varchar as symbol,
        exchange::varchar as exchange,
        shortname::varchar as shortname,
        name::varchar as name,
        sector::varchar as sector,
        industry::varchar as industry,
        city::varchar as city,
        state::varchar as state,
        country::varchar as country,
        longbusinesssummary::varchar as business_summary,
        -- snapshot columns, as of the download date: never features
        currentprice::double as snapshot_price,
        marketcap::double as snapshot_market_cap,
        ebitda::double as snapshot_ebitda,
        revenuegrowth::double as snapshot_revenue_growth,
        fulltimeemployees::double as snapshot_employees,
        weight::double as snapshot_index_weight
    from source
)

select * from renamed;
