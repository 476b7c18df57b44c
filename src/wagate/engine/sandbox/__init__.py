"""The sandbox WhatsApp network: a simulated WhatsApp for development, demos, CI and fault tests.

- :class:`SandboxNetwork` (``network.py``): the simulated network and its control operations;
  linking in ``linking.py``, faults in ``faults.py``, messaging in ``messaging.py`` (routing in
  ``office.py``, inboxes and device queues in ``mail.py``, groups in ``groups.py``, media in
  ``blobs.py``), all saved through ``state.py``.
- :func:`create_app` / :func:`run_server` (``server.py``): the network as a websocket + control API.
- :class:`SandboxEngine` (``client.py``): wagate's engine that connects sessions to it;
  :class:`SandboxLink` (``link.py``) is one session's link, its frames decoded by ``codec.py``.
- :class:`SandboxControl` (``control.py``): an HTTP client of the control API.
- ``transport.py``: the channels frames travel on (in memory, websockets, Starlette).
"""

from wagate.engine.sandbox.client import SandboxEngine, SandboxLink
from wagate.engine.sandbox.connection import ConnectionInfo
from wagate.engine.sandbox.control import SandboxControl
from wagate.engine.sandbox.faults import FaultKind
from wagate.engine.sandbox.network import (
    AccountInfo,
    DeviceInfo,
    SandboxLimits,
    SandboxNetwork,
    SandboxTimings,
)
from wagate.engine.sandbox.server import create_app, run_server
from wagate.engine.sandbox.transport import Channel, ChannelClosed, memory_pair

__all__ = [
    "AccountInfo",
    "Channel",
    "ChannelClosed",
    "ConnectionInfo",
    "DeviceInfo",
    "FaultKind",
    "SandboxControl",
    "SandboxEngine",
    "SandboxLimits",
    "SandboxLink",
    "SandboxNetwork",
    "SandboxTimings",
    "create_app",
    "memory_pair",
    "run_server",
]
