"""Distributed engines for the stages that outgrow one machine (``alignrec[scale]``).

Modules: :mod:`~alignrec_data.engine.plan` (the engine-agnostic shard plan: contiguous
item-id ranges), :mod:`~alignrec_data.engine.shared_hosts` (the per-host rate limit and host
breaker shared by all workers), :mod:`~alignrec_data.engine.ray_images` (the images stage on
Ray; imports ``ray`` only when it runs), :mod:`~alignrec_data.engine.shards` (the part files of
a sharded extraction and their one merge, shared with torchrun) and
:mod:`~alignrec_data.engine.ray_extract` (the extract stage on Ray). Nothing here imports ray
at import time.
"""

from alignrec_data.engine.plan import ShardTask, items_per_shard, plan_shards, shard_count
from alignrec_data.engine.shared_hosts import HostState, SharedBreaker, SharedLimiter

__all__ = [
    "HostState",
    "SharedBreaker",
    "SharedLimiter",
    "ShardTask",
    "items_per_shard",
    "plan_shards",
    "shard_count",
]
