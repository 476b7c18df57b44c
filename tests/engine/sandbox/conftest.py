"""The engine adapter's tests run against the sandbox network: its fixtures are shared."""

from tests.sandbox.conftest import (  # noqa: F401 - fixtures, registered by being here
    closed_port,
    engine,
    make_network,
    network,
    serve_app,
    served,
    watch,
)
