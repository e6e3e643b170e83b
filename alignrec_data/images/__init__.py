"""The images stage: fetch, validate, resize and pack item images (``alignrec-data images``).

Modules: :mod:`~alignrec_data.images.urls` (candidate order, mirror rewrite),
:mod:`~alignrec_data.images.fetch` (HTTP/file fetching with limits),
:mod:`~alignrec_data.images.hosts` (per-host breaker and counts),
:mod:`~alignrec_data.images.validate` (decode, verify, resize, re-encode),
:mod:`~alignrec_data.images.store` (shards, index, readers),
:mod:`~alignrec_data.images.config` (the ``images`` params),
:mod:`~alignrec_data.images.resume` (what a rerun keeps),
:mod:`~alignrec_data.images.work` (the fetch loop and shard writer),
:mod:`~alignrec_data.images.stage` (the stage itself). Layout on disk: see ``store``.
"""

from alignrec_data.images.config import ImagesConfig
from alignrec_data.images.fetch import Fetcher, FetchResult, FetchSettings, HostRateLimiter
from alignrec_data.images.hosts import HostBreaker
from alignrec_data.images.stage import ImagesResult, fetch_images
from alignrec_data.images.store import (
    INDEX_FILE,
    STATS_FILE,
    iter_image_bytes,
    iter_images,
    load_image_index,
    load_images,
)
from alignrec_data.images.urls import (
    IMAGE_MIRROR_ENV,
    MirrorRule,
    MirrorRules,
    image_candidates,
    mirror_rules,
    strip_size_modifier,
)
from alignrec_data.images.validate import ImageRejected, ImageSettings, StoredImage, process_image

__all__ = [
    "IMAGE_MIRROR_ENV",
    "INDEX_FILE",
    "STATS_FILE",
    "FetchResult",
    "FetchSettings",
    "Fetcher",
    "HostBreaker",
    "HostRateLimiter",
    "ImageRejected",
    "ImageSettings",
    "ImagesConfig",
    "ImagesResult",
    "MirrorRule",
    "MirrorRules",
    "StoredImage",
    "fetch_images",
    "image_candidates",
    "iter_image_bytes",
    "iter_images",
    "load_image_index",
    "load_images",
    "mirror_rules",
    "process_image",
    "strip_size_modifier",
]
