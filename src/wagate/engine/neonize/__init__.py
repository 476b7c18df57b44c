"""The real WhatsApp engine: neonize (whatsmeow through its Go shared library).

The only package of wagate that imports neonize. ``NeonizeEngine(config)``
implements :class:`wagate.engine.base.Engine`; see :mod:`.engine` for the
public surface, :mod:`.client` and :mod:`.calls` for how neonize's hazards
are kept away (its unlocked Go maps, its leaks, its stuck stops).
"""

from wagate.engine.neonize.engine import NeonizeConfig, NeonizeEngine
from wagate.engine.neonize.link import NeonizeLink

__all__ = ["NeonizeConfig", "NeonizeEngine", "NeonizeLink"]
