"""Generation backends: the cloud providers (one job engine, one module per
provider) and ``local/`` (diffusers pipelines and the camera engine).

:mod:`.base` defines the request types and the backend interface every
provider implements; :func:`.base.get_backend` picks one by name.
"""
