"""MLflow tracking: the run's record in a store. With ``engine.lifecycle.registry`` the only
code that imports mlflow, lazily, and only when tracking (``engine run --no-tracking``
never imports it).

* ``errors``: what tracking answers (``TrackingError``, ``RegistryError``, ``TrackedRun``);
* ``store``: the store's URI, probe, credentials, client, experiment and lock;
* ``record``: what a run records, and the call that registers its model;
* ``worker``: the process that prepares and logs the run while the pipeline computes.

Each imports only those listed before it (``record`` also ``registry``), and this package
imports none of them: importing ``worker`` stays light.
"""
