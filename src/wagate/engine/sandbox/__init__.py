"""The sandbox engine: wagate's adapter to the sandbox WhatsApp network (:mod:`wagate.sandbox`).

- :class:`SandboxEngine` (``client.py``): connects sessions to a network, in this
  process or over a websocket;
- :class:`SandboxLink` (``link.py``): one session's link, its frames decoded by ``codec.py``
  and its requests matched to answers by ``calls.py``.
"""

from wagate.engine.sandbox.client import SandboxEngine, SandboxLink

__all__ = ["SandboxEngine", "SandboxLink"]
