"""Input data: archive validation, the Parquet cache, the synthetic archive, which archive a run uses."""
