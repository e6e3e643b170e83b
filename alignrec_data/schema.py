"""The prepared dataset layout (``<data-dir>/<dataset>/prepared/``), shared by every stage.

- ``interactions.parquet``: one row per kept (user, item) interaction, sorted by
  (user_id, timestamp, item_id): ``user_id`` and ``item_id`` (int64, contiguous from 0),
  ``user_key`` and ``item_key`` (raw reviewerID / asin / parent_asin), ``rating`` (float32),
  ``timestamp`` (int64, Unix seconds), ``split`` (string: ``train`` / ``valid`` / ``test``).
- ``items.parquet``: ``item_id``, ``item_key``, ``title``, ``brand``, ``categories``
  (list of strings, most general first), ``description``, ``text`` (assembled from the
  template), ``image_urls`` (candidate URLs in the order to try), ``has_image`` (bool: the
  metadata names at least one image URL; the ``images`` stage records whether one was fetched).
- ``users.parquet``: ``user_id``, ``user_key``, ``n_interactions``.
- ``stats.json``: counts before and after each step, bad-line counts, missing-image rate.
"""

from __future__ import annotations

import pyarrow as pa

SPLITS = ("train", "valid", "test")
# MMRec's x_label codes for the splits above.
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}

INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
STATS_FILE = "stats.json"

INTERACTIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("user_key", pa.string()),
        ("item_key", pa.string()),
        ("rating", pa.float32()),
        ("timestamp", pa.int64()),
        ("split", pa.string()),
    ]
)

ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("item_key", pa.string()),
        ("title", pa.string()),
        ("brand", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("description", pa.string()),
        ("text", pa.string()),
        ("image_urls", pa.list_(pa.string())),
        ("has_image", pa.bool_()),
    ]
)

USERS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("user_key", pa.string()),
        ("n_interactions", pa.int64()),
    ]
)
