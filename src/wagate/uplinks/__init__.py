"""How a worker talks to its control plane: one protocol, one module per way.

``gateway`` speaks seed 002's worker → backend calls (register, heartbeat,
session status); ``seed004`` reports a session process's signed events to the
control plane's ``/webhook``; ``edge`` (seed 001) polls a worker-proxy.
"""
