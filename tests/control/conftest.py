"""The control services are driven through the API of a gateway wired as in production."""

from tests.outbound.conftest import Rig, make_rig, rig
from tests.storage.conftest import raw_redis, redis, redis_prefix, redis_url, relay

__all__ = ["Rig", "make_rig", "raw_redis", "redis", "redis_prefix", "redis_url", "relay", "rig"]
