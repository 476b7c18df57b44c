"""The sandbox WhatsApp network: a simulated WhatsApp for development, demos, CI and fault tests.

- :class:`SandboxNetwork` (``network.py``): the simulated network, put together
  from its parts, and its control operations; serving connections in
  ``switchboard.py`` (the live ones in ``connections.py``), linking in
  ``linking.py``, faults in ``faults.py``, the sessions' messaging ops in
  ``messaging.py`` and the phone's side in ``phones.py`` (routing in
  ``office.py``, inboxes and device queues in ``mail.py``, groups in
  ``groups.py``, media in ``blobs.py``), all saved through ``state.py``.
  Every wait and timestamp goes through the injected :class:`~wagate.clock.Clock`.
- :func:`create_app` / :func:`run_server` (``server.py``): the network as a websocket + control API.
- :class:`SandboxControl` (``control.py``): an HTTP client of the control API.
- ``transport.py``: the channels frames travel on (in memory, websockets, Starlette).

Sessions reach it through the sandbox engine (:mod:`wagate.engine.sandbox`); the
network itself knows nothing of engines.
"""

from wagate.sandbox.connection import ConnectionInfo
from wagate.sandbox.control import SandboxControl
from wagate.sandbox.faults import FaultKind
from wagate.sandbox.network import (
    AccountInfo,
    DeviceInfo,
    SandboxLimits,
    SandboxNetwork,
    SandboxTimings,
)
from wagate.sandbox.server import create_app, run_server
from wagate.sandbox.transport import Channel, ChannelClosed, memory_pair

__all__ = [
    "AccountInfo",
    "Channel",
    "ChannelClosed",
    "ConnectionInfo",
    "DeviceInfo",
    "FaultKind",
    "SandboxControl",
    "SandboxLimits",
    "SandboxNetwork",
    "SandboxTimings",
    "create_app",
    "memory_pair",
    "run_server",
]
