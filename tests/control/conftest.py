"""The control services are driven through the API of a gateway wired as in production."""

from tests.outbound.conftest import Rig, make_rig, rig

__all__ = ["Rig", "make_rig", "rig"]
