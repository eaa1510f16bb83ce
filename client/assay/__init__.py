"""assay: stream training metrics to a self-hosted, real-time experiment tracker.

import assay

with assay.init(project="mnist", config={"lr": 0.01}) as run:
    for step in range(1000):
        run.log({"loss": train_step()})
"""

from assay._api import Api, ApiRun
from assay._errors import (
    AssayError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    InvalidValueError,
    NotFoundError,
    ServerError,
)
from assay._run import Run, init
from assay._sender import SenderOptions

__version__ = "0.1.0"

__all__ = [
    "Api",
    "ApiRun",
    "AssayError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "InvalidValueError",
    "NotFoundError",
    "Run",
    "SenderOptions",
    "ServerError",
    "__version__",
    "init",
]
