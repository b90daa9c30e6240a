-- Run output: out-of-sample model scores, one file per model
-- (OUTPUT_PATH/predictions_<model>.parquet), with the model named from the file.

create or replace view predictions as
with source as (
    select * from src_predictions
),

renamed as (
    select
        regexp_extract(parse_filename(filename, true), '^[a-z]+_(.+)$', 1) as model,
        * exclude (filename)
    from source
)

select * from renamed;
