"""MLflow: tracking, the model registry, the promotion policy; the only importers of mlflow."""
