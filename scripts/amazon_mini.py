"""The embedded default dataset ``amazon-mini``: a seeded, deterministic generator.

``amazon-mini`` is synthetic data in the raw Amazon 2018 format (gzipped JSON-lines reviews and
metadata, JPEG images behind the metadata's image URLs), shipped inside the package in
``alignrec_data/mini/`` and fetched by ``download`` through the registry's ``package:mini``
base URL. It has no real users, products or reviews, but it has structure a recommender and a
multimodal encoder can learn:

* Items belong to one of ten latent categories. A category shows in the drawn image (a colour
  palette and a shape) and in the words of the title, features and description. Each modality
  alone is partly ambiguous by construction: categories come in *colour pairs* that share a
  palette (they differ only in shape, and a third of the items draw a generic blob instead) and
  in *word pairs* that share a vocabulary (they differ only in a few category-specific words,
  a minority of each text's words, that some items lack). The two pairings are offset, so image
  and text together single out the category.
* Items also have one of three styles (pastel, bold, dark): a colour tone in the image and a
  tone word in every title and often in the text, as real listings name their colourway.
* Users prefer one to three categories and one style and draw most interactions from them,
  with a popularity skew inside each category and some uniform noise, so content that shows
  category and style carries signal that IDs must learn from interactions.
* Timestamps span two years; items launch over time, so late items are cold-ish.
* Raw-data blemishes the pipeline must handle: duplicate reviews (exact copies and later
  re-reviews of the same item), a few users and items below 5 interactions, items without image
  URLs, URLs whose file is missing (HTTP 404), broken image files (truncated JPEG, a text file
  named ``.jpg``, an empty file), thumbnail URLs with size modifiers (``._SS40_``), HTML in
  category paths, duplicate metadata lines and metadata for items nobody reviewed.

The generator is seeded and deterministic: for a given seed and config it writes byte-identical
files (gzip with ``mtime=0`` and a fixed name, JPEG via Pillow with fixed settings), so the
shipped files can be rebuilt and checked (:func:`check_amazon_mini`,
``python scripts/make_amazon_mini.py --check``). The latent ground truth is shipped next to the
data in ``latent_items.tsv`` (:func:`load_latent_items`) for tests and evaluations; the pipeline
itself never reads it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignrec_data.atomic import atomic_path
from alignrec_data.clean import k_core
from alignrec_data.errors import UsageError

logger = logging.getLogger(__name__)

MINI_DIR = Path(__file__).resolve().parents[1] / "alignrec_data" / "mini"
"""The shipped files (``reviews_Mini_5.json.gz``, ``meta_Mini.json.gz``, ``images/``, ...)."""

REVIEWS_FILE = "reviews_Mini_5.json.gz"
META_FILE = "meta_Mini.json.gz"
LATENT_FILE = "latent_items.tsv"
README_FILE = "README.md"
IMAGES_DIR = "images"
IMAGE_BASE_URL = "https://images.amazon-mini.invalid/images/"
"""Prefix of every image URL in the metadata (``.invalid`` never resolves: use the mirror)."""
REVIEW_IMAGE_BASE_URL = "https://images.amazon-mini.invalid/review-images/"

# Image statuses of an item (column ``image_status`` of latent_items.tsv).
IMAGE_OK = "ok"  # URL(s) in the metadata, a decodable JPEG in images/
IMAGE_NO_URL = "no_url"  # no image URL at all
IMAGE_MISSING = "missing"  # URL present, no file (the mirror answers 404)
IMAGE_TRUNCATED = "truncated"  # the first part of a JPEG only
IMAGE_NOT_JPEG = "not_jpeg"  # a small HTML error page saved under the .jpg name
IMAGE_EMPTY = "empty"  # a 0-byte file
BROKEN_IMAGE_STATUSES = (IMAGE_TRUNCATED, IMAGE_NOT_JPEG, IMAGE_EMPTY)


@dataclass(frozen=True)
class Category:
    """One latent item category and how it shows in each modality.

    Attributes:
        name: Human-readable name (ground truth only; never written into the raw files).
        shape: The shape drawn on the item image.
        palette: Index into :data:`PALETTES`; categories ``2k`` and ``2k+1`` share one.
        words: Index into :data:`WORD_GROUPS`; categories ``2k+1`` and ``2k+2`` share one.
        own_words: Words only this category uses (in a minority of its items).
    """

    name: str
    shape: str
    palette: int
    words: int
    own_words: tuple[str, ...]


# Colour palettes: (main colours, accent colours). Shared by the colour pairs (0,1), (2,3), ...
PALETTES: tuple[tuple[tuple[tuple[int, int, int], ...], tuple[tuple[int, int, int], ...]], ...] = (
    (((214, 48, 49), (230, 90, 40), (200, 40, 80)), ((250, 200, 60), (120, 20, 20))),  # reds
    (((40, 90, 210), (30, 140, 220), (60, 60, 180)), ((200, 230, 255), (20, 30, 90))),  # blues
    (((40, 160, 70), (90, 170, 40), (20, 120, 90)), ((220, 240, 150), (20, 70, 30))),  # greens
    (((140, 60, 190), (200, 70, 170), (110, 50, 150)), ((250, 190, 230), (60, 20, 80))),  # purples
    (((235, 190, 40), (200, 140, 40), (170, 110, 50)), ((255, 240, 170), (90, 60, 20))),  # ambers
)

# Shared vocabularies. Used by the word pairs (1,2), (3,4), (5,6), (7,8), (9,0).
WORD_GROUPS: tuple[tuple[str, ...], ...] = (
    ("blanket", "fleece", "cozy", "throw", "plush", "knit", "snuggle", "warm", "nap", "layer"),
    ("bottle", "cup", "sippy", "leakproof", "drink", "straw", "lid", "feeding", "spill", "sip"),
    ("toy", "rattle", "sensory", "teether", "squeeze", "grip", "chew", "activity", "play", "fun"),
    (
        "bag",
        "tote",
        "strap",
        "zipper",
        "pocket",
        "organizer",
        "carry",
        "travel",
        "storage",
        "pouch",
    ),
    ("lamp", "night", "glow", "light", "bedside", "soothing", "dim", "timer", "led", "bulb"),
)

CATEGORIES: tuple[Category, ...] = (
    Category("swaddles", "circle", 0, 0, ("swaddle", "muslin", "wrap", "receiving", "stretchy")),
    Category("bottles", "square", 0, 1, ("formula", "nipple", "anticolic", "warmer", "vent")),
    Category("tableware", "triangle", 1, 1, ("bowl", "plate", "spoon", "suction", "utensil")),
    Category("puzzles", "diamond", 1, 2, ("puzzle", "blocks", "stacking", "wooden", "sorter")),
    Category("plushies", "star", 2, 2, ("bear", "bunny", "stuffed", "doll", "cuddly")),
    Category("backpacks", "ring", 2, 3, ("backpack", "harness", "daypack", "hiking", "padded")),
    Category("hampers", "cross", 3, 3, ("hamper", "basket", "bin", "shelf", "caddy")),
    Category("projectors", "hexagon", 3, 4, ("projector", "ceiling", "galaxy", "moon", "stars")),
    Category(
        "lanterns", "bars", 4, 4, ("lantern", "flashlight", "camping", "rechargeable", "torch")
    ),
    Category("quilts", "crescent", 4, 0, ("quilt", "comforter", "crib", "sheet", "fitted")),
)

# Styles cut across categories: a colour tone in the image and a tone word in the text. Users
# prefer one style, so a recommender gains from content that shows it.
STYLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pastel", ("pastel", "powder", "blush")),
    ("bold", ("bold", "vivid", "neon")),
    ("dark", ("dark", "deep", "charcoal")),
)

GENERIC_WORDS: tuple[str, ...] = (
    "baby", "kids", "premium", "quality", "new", "gift", "design", "durable", "easy", "safe",
    "perfect", "home", "set", "everyday", "compact", "classic", "modern", "cute", "ideal",
    "portable", "simple", "sturdy", "value", "family", "daily", "essential", "deluxe", "original",
    "soft", "lightweight", "toddler", "infant", "nursery", "washable", "colorful", "sturdy",
)  # fmt: skip

BRANDS: tuple[str, ...] = (
    "Lumo", "Pipkin", "Nestly", "Bramble & Co", "Kiddo Labs", "Tiny Harbor", "Oakleaf",
    "Sunnybird", "Marlo", "Pebble Kids", "Zoë & Finn", "Hushaby", "Little Fable", "Quokka",
    "Brightwell", "Cobble", "Fernway", "Mellow Moon", "Tumbleweed", "Nordlys",
)  # fmt: skip

FIRST_NAMES: tuple[str, ...] = (
    "Alex", "Sam", "Jordan", "Taylor", "Chris", "Pat", "Jamie", "Morgan", "Casey", "Robin",
    "Lee", "Dana", "Kim", "Noor", "Ana", "José", "Mia", "Liam", "Emma", "Noah", "Olivia",
    "Ava", "Lucas", "Sofia", "Ethan", "Chloé", "Mateo", "Aisha", "Yuki", "Priya",
)  # fmt: skip

# The department level of the category path: cuts across both pairings (partial signal only).
DEPARTMENTS: tuple[str, ...] = (
    "Nursery &amp; Bedding",
    "Feeding &amp; Play",
    '<span class="a-list-item">Gear</span>',
)
COLOUR_NAMES = ("Red", "Blue", "Green", "Purple", "Amber", "Grey", "White", "Multicolor")
SIZE_NAMES = ("Small", "Medium", "Large", "One Size", "2 Pack", "3 Pack")
IMAGE_SIZE_MODIFIERS = ("._SS40_", "._SS40_", "._SS40_", "._SX300_", "._SY300_")


@dataclass(frozen=True)
class MiniConfig:
    """Knobs of the generator (the defaults produce the shipped files with ``seed=0``).

    Attributes:
        n_users: Users generated (a few fall below 5 interactions and are filtered out).
        n_items: Items with reviews (a few end up below 5 and are filtered out).
        n_meta_only_items: Extra metadata lines for items nobody reviewed.
        n_sparse_items: Extra items with only 1-4 reviews (5-core filtering removes them).
        mean_interactions: Mean interactions per user before filtering (5 + geometric tail).
        low_activity_users: Share of users with only 3-4 interactions (exercises 5-core).
        preferred_share: Share of a user's interactions drawn from their preferred categories.
        popularity_exponent: Zipf exponent of item popularity inside a category.
        style_share: Share of a user's preferred-category interactions in their own style.
        novelty_boost: Extra popularity of a just-launched item (x ``1 + boost``), decaying
            with time constant ``novelty_days``: new items draw attention while they have few
            interactions, so they are cold in the training data of a temporal split.
        novelty_days: Decay time of the novelty boost in days.
        late_item_share: Share of items launched during the two-year window (cold-ish).
        duplicate_share: Share of reviews written twice (exact copy or later re-review).
        image_px: Side of the square JPEG images in pixels.
        jpeg_quality: JPEG quality.
        generic_shape_share: Share of items drawing a generic blob instead of their shape.
        own_words_share: Share of items whose text uses their category's own words.
        style_word_prob: Chance that a text word is the item's style tone word ("pastel",
            "bold", "dark" or a synonym), as real listings name their colourway.
        own_word_prob: Chance that a text word is one of the category's own words (items
            with ``own_words`` only).
        style_title_share: Share of titles that start with a tone word.
        image_status_shares: Share of items per non-ok image status (rest are ``ok``).
        thumb_only_share: Share of ``ok`` items listing only the thumbnail URL (``._SS40_``).
        start: First review day (ISO date); reviews span ``days`` days from it.
        days: Length of the review window in days.
    """

    n_users: int = 1250  # ~1,200 remain after dedupe + 5-core (3% low-activity users go)
    n_items: int = 560  # all remain after 5-core (~33 interactions each)
    n_meta_only_items: int = 20
    n_sparse_items: int = 6
    mean_interactions: float = 15.5  # ~18,000 interactions remain after dedupe + 5-core
    low_activity_users: float = 0.03
    preferred_share: float = 0.85
    popularity_exponent: float = 0.7
    style_share: float = 0.75
    novelty_boost: float = 4.0
    novelty_days: float = 60.0
    late_item_share: float = 0.5
    duplicate_share: float = 0.015
    image_px: int = 96
    jpeg_quality: int = 85
    generic_shape_share: float = 0.3
    own_words_share: float = 0.9
    style_word_prob: float = 0.3
    own_word_prob: float = 0.25
    style_title_share: float = 1.0
    image_status_shares: tuple[tuple[str, float], ...] = (
        (IMAGE_NO_URL, 0.05),
        (IMAGE_MISSING, 0.03),
        (IMAGE_TRUNCATED, 0.02),
        (IMAGE_NOT_JPEG, 0.01),
        (IMAGE_EMPTY, 0.01),
    )
    thumb_only_share: float = 0.1
    start: str = "2016-06-01"
    days: int = 730


@dataclass
class _Item:
    asin: str
    category: int
    launch: int  # unix seconds
    popularity: float
    image_status: str
    generic_shape: bool
    own_words: bool
    style: int = 0
    reviewed: bool = True
    sparse: bool = False  # reviewed by 1-4 users only


# --------------------------------------------------------------------------------------------
# Public API


def generate_amazon_mini(
    out_dir: str | Path, seed: int = 0, config: MiniConfig | None = None
) -> dict[str, str]:
    """Generate the ``amazon-mini`` files into ``out_dir`` (created if needed).

    Writes ``reviews_Mini_5.json.gz``, ``meta_Mini.json.gz``, ``images/<asin>.jpg``,
    ``latent_items.tsv`` (ground truth: category and image status per item) and ``README.md``.
    Existing files of the same names are replaced (atomically, one by one); stale images from an
    earlier run with other settings are removed.

    Args:
        out_dir: Target folder (``alignrec_data/mini`` for the shipped copy).
        seed: Seed of the numpy Generator; the shipped files use 0.
        config: Generator knobs; None for :class:`MiniConfig` defaults.

    Returns:
        Relative path (POSIX) -> sha256 of every file written, sorted by path.

    Raises:
        UsageError: A config value is out of range.
    """
    cfg = config or MiniConfig()
    files, stats = _build_files(seed, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images_dir = out / IMAGES_DIR
    if images_dir.is_dir():
        keep = {Path(p).name for p in files if p.startswith(IMAGES_DIR + "/")}
        for stale in images_dir.iterdir():
            if stale.name not in keep:
                stale.unlink()
    for rel, data in files.items():
        with atomic_path(out / rel) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)  # mkstemp makes 0600 files; these are shipped, world-readable data
    logger.info(
        "generate amazon-mini into %s: %d users, %d items, %d interactions after 5-core",
        out,
        stats["users"],
        stats["items"],
        stats["interactions"],
    )
    return {rel: hashlib.sha256(files[rel]).hexdigest() for rel in sorted(files)}


def _build_files(seed: int, cfg: MiniConfig) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file's bytes (relative POSIX path -> content) and the statistics, in memory."""
    _validate(cfg)
    seqs = np.random.SeedSequence(seed).spawn(5)
    rng_items, rng_users, rng_text, rng_img, rng_rev = (np.random.default_rng(s) for s in seqs)
    items = _make_items(rng_items, cfg)
    interactions = _make_interactions(rng_users, cfg, items)
    files: dict[str, bytes] = {
        REVIEWS_FILE: _gzip_lines(REVIEWS_FILE, _review_lines(rng_rev, cfg, items, interactions)),
        META_FILE: _gzip_lines(META_FILE, _meta_lines(rng_text, cfg, items)),
    }
    for item in items:
        data = _image_bytes(rng_img, cfg, item)
        if data is not None:
            files[f"{IMAGES_DIR}/{item.asin}.jpg"] = data
    files[LATENT_FILE] = _latent_tsv(items).encode("utf-8")
    stats = mini_stats(interactions, items)
    files[README_FILE] = _readme(seed, cfg, stats).encode("utf-8")
    return files, stats


def file_sha256s(folder: str | Path) -> dict[str, str]:
    """Relative path (POSIX) -> sha256 of every file under ``folder``, sorted by path.

    Hidden files and ``__pycache__`` folders are ignored.
    """
    root = Path(folder)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith((".", "__")) for part in rel.parts):
            continue
        out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def check_amazon_mini(
    folder: str | Path = MINI_DIR, seed: int = 0, config: MiniConfig | None = None
) -> list[str]:
    """Regenerate in memory and compare every file's sha256 with ``folder``.

    Args:
        folder: The folder to check (default: the shipped files).
        seed: The seed the files were made with.
        config: The config they were made with (None for the defaults).

    Returns:
        One line per difference (``changed``, ``missing`` or ``unexpected`` file); empty when
        ``folder`` is exactly what the generator writes.
    """
    files, _ = _build_files(seed, config or MiniConfig())
    expected = {rel: hashlib.sha256(files[rel]).hexdigest() for rel in sorted(files)}
    found = file_sha256s(folder)
    problems = []
    for rel, sha in expected.items():
        if rel not in found:
            problems.append(f"missing: {rel} (expected sha256 {sha})")
        elif found[rel] != sha:
            problems.append(f"changed: {rel} (expected sha256 {sha}, found {found[rel]})")
    problems += [f"unexpected: {rel}" for rel in found if rel not in expected]
    return problems


def load_latent_items(folder: str | Path = MINI_DIR) -> dict[str, dict[str, Any]]:
    """Read the ground truth ``latent_items.tsv``: asin -> category, name, image status.

    Args:
        folder: The folder holding the generated files (default: the shipped copy).

    Returns:
        ``{asin: {"category": int, "category_name": str, "style": str, "image_status": str,
        "reviewed": bool, "launch": int}}`` in file order (sorted by asin); ``launch`` is
        the item's launch time (unix seconds), ``reviewed`` False for metadata-only items.

    Raises:
        UsageError: The file is missing.
    """
    path = Path(folder) / LATENT_FILE
    if not path.is_file():
        msg = (
            f"{path} does not exist; generate it with "
            f"`python scripts/make_amazon_mini.py --out {Path(folder)}`"
        )
        raise UsageError(msg)
    rows = path.read_text(encoding="utf-8").splitlines()
    out: dict[str, dict[str, Any]] = {}
    for line in rows[1:]:
        asin, cat, name, style, status, reviewed, launch = line.split("\t")
        out[asin] = {
            "category": int(cat),
            "category_name": name,
            "style": style,
            "image_status": status,
            "reviewed": reviewed == "1",
            "launch": int(launch),
        }
    return out


def mini_stats(
    interactions: Sequence[tuple[str, str, int]], items: Sequence[_Item] | None = None, k: int = 5
) -> dict[str, Any]:
    """Counts of raw reviews and of the deduplicated, iterative ``k``-core interactions.

    Args:
        interactions: ``(reviewerID, asin, unixReviewTime)`` per review line, duplicates
            included.
        items: The generated items (adds image-status counts), or None.
        k: Core size.

    Returns:
        A dict with ``raw_reviews``, ``duplicates``, ``raw_users``, ``raw_items``, ``users``,
        ``items``, ``interactions``, ``density``, ``min_user_degree``, ``min_item_degree``,
        ``median_item_degree``, ``max_item_degree`` and, with ``items``, ``image_status``
        (counts among the core items).
    """
    first: dict[tuple[str, str], int] = {}
    for u, i, t in interactions:
        if (u, i) not in first or t < first[(u, i)]:
            first[(u, i)] = t
    pairs = kcore(first, k)
    users = {u for u, _ in pairs}
    core_items = {i for _, i in pairs}
    item_deg: dict[str, int] = {}
    user_deg: dict[str, int] = {}
    for u, i in pairs:
        item_deg[i] = item_deg.get(i, 0) + 1
        user_deg[u] = user_deg.get(u, 0) + 1
    degs = sorted(item_deg.values())
    stats: dict[str, Any] = {
        "raw_reviews": len(interactions),
        "duplicates": len(interactions) - len(first),
        "raw_users": len({u for u, _ in first}),
        "raw_items": len({i for _, i in first}),
        "users": len(users),
        "items": len(core_items),
        "interactions": len(pairs),
        "density": round(len(pairs) / max(1, len(users) * len(core_items)), 4),
        "min_user_degree": min(user_deg.values(), default=0),
        "min_item_degree": degs[0] if degs else 0,
        "median_item_degree": degs[len(degs) // 2] if degs else 0,
        "max_item_degree": degs[-1] if degs else 0,
    }
    if items is not None:
        counts: dict[str, int] = {}
        for it in items:
            if it.asin in core_items:
                counts[it.image_status] = counts.get(it.image_status, 0) + 1
        stats["image_status"] = dict(sorted(counts.items()))
    return stats


def kcore(pairs: Sequence[tuple[str, str]] | dict, k: int = 5) -> list[tuple[str, str]]:
    """Iterative ``k``-core of distinct ``(user, item)`` pairs (:func:`alignrec_data.clean.k_core`).

    Args:
        pairs: Distinct ``(user, item)`` pairs (a dict's keys work too).
        k: Minimum degree of every user and item in the result.

    Returns:
        The remaining pairs, in input order.
    """
    cur = list(pairs)
    users = np.unique([u for u, _ in cur], return_inverse=True)[1] if cur else np.array([], int)
    items = np.unique([i for _, i in cur], return_inverse=True)[1] if cur else np.array([], int)
    keep, _ = k_core(users.astype(np.int64), items.astype(np.int64), k, k)
    return [cur[j] for j in keep]


# --------------------------------------------------------------------------------------------
# World: items, users, interactions


def _validate(cfg: MiniConfig) -> None:
    checks = {
        "n_users": cfg.n_users >= 10,
        "n_items": cfg.n_items >= len(CATEGORIES) * 2,
        "n_meta_only_items": cfg.n_meta_only_items >= 0,
        "n_sparse_items": cfg.n_sparse_items >= 0,
        "mean_interactions": cfg.mean_interactions > 5,
        "novelty_boost": cfg.novelty_boost >= 0,
        "novelty_days": cfg.novelty_days > 0,
        "image_px": 32 <= cfg.image_px <= 512,
        "jpeg_quality": 1 <= cfg.jpeg_quality <= 95,
        "days": cfg.days >= 30,
    }
    for name in (
        "low_activity_users",
        "preferred_share",
        "late_item_share",
        "duplicate_share",
        "generic_shape_share",
        "own_words_share",
        "thumb_only_share",
        "style_share",
    ):
        checks[name] = 0.0 <= getattr(cfg, name) <= 1.0
    checks["image_status_shares"] = sum(s for _, s in cfg.image_status_shares) <= 1.0
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        values = ", ".join(f"{n}={getattr(cfg, n)!r}" for n in bad)
        msg = f"MiniConfig out of range: {values}; see the MiniConfig docstring for valid values"
        raise UsageError(msg)


def _start_ts(cfg: MiniConfig) -> int:
    d = dt.date.fromisoformat(cfg.start)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())


def _random_id(rng: np.random.Generator, prefix: str, length: int, taken: set[str]) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while True:
        s = prefix + "".join(alphabet[j] for j in rng.integers(0, 36, length - len(prefix)))
        if s not in taken:
            taken.add(s)
            return s


def _make_items(rng: np.random.Generator, cfg: MiniConfig) -> list[_Item]:
    n_cat = len(CATEGORIES)
    total = cfg.n_items + cfg.n_sparse_items + cfg.n_meta_only_items
    taken: set[str] = set()
    start, span = _start_ts(cfg), cfg.days * 86400
    statuses, shares = zip(*cfg.image_status_shares, strict=True)
    probs = np.array([*shares, 1.0 - sum(shares)])
    names = [*statuses, IMAGE_OK]
    items = []
    for idx in range(total):
        cat = idx % n_cat  # equal category sizes (+-1)
        late = rng.random() < cfg.late_item_share
        # Late items launch in the first 80% of the window so they can still reach 5 reviews.
        launch = (
            start + int(rng.random() * 0.8 * span)
            if late
            else start - int(rng.integers(1, 400)) * 86400
        )
        items.append(
            _Item(
                asin=_random_id(rng, "B0", 10, taken),
                category=cat,
                launch=launch,
                popularity=0.0,
                image_status=names[int(rng.choice(len(names), p=probs))],
                generic_shape=bool(rng.random() < cfg.generic_shape_share),
                own_words=bool(rng.random() < cfg.own_words_share),
                style=int(rng.random() * len(STYLES)),
                reviewed=idx < cfg.n_items + cfg.n_sparse_items,
                sparse=cfg.n_items <= idx < cfg.n_items + cfg.n_sparse_items,
            )
        )
    # Zipf popularity inside each category over a random rank order.
    for c in range(n_cat):
        members = [it for it in items if it.category == c and it.reviewed and not it.sparse]
        ranks = rng.permutation(len(members))
        for it, r in zip(members, ranks, strict=True):
            it.popularity = float((r + 2.0) ** -cfg.popularity_exponent)
    return sorted(items, key=lambda it: it.asin)


def _make_interactions(
    rng: np.random.Generator, cfg: MiniConfig, items: list[_Item]
) -> list[tuple[str, str, int]]:
    """Users with category preferences draw items; returns ``(user, asin, time)`` per review."""
    n_cat = len(CATEGORIES)
    start, span = _start_ts(cfg), cfg.days * 86400
    reviewed = [it for it in items if it.reviewed]
    cat_of = np.array([it.category for it in reviewed])
    launch = np.array([it.launch for it in reviewed])
    pop = np.array([it.popularity for it in reviewed])
    cat_weight = 0.6 + rng.random(n_cat)  # some categories are more popular than others
    style_of = np.array([it.style for it in reviewed])
    members = [np.flatnonzero(cat_of == c) for c in range(n_cat)]
    styled = [
        [np.flatnonzero((cat_of == c) & (style_of == st)) for st in range(len(STYLES))]
        for c in range(n_cat)
    ]
    everything = np.arange(len(reviewed))
    taken: set[str] = set()
    out: list[tuple[str, str, int]] = []
    users: list[str] = []
    for _ in range(cfg.n_users):
        user = _random_id(rng, "A", 14, taken)
        users.append(user)
        k = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
        prefs = rng.choice(n_cat, size=k, replace=False, p=cat_weight / cat_weight.sum())
        pref_w = rng.dirichlet(np.full(k, 2.0))
        style = int(rng.random() * len(STYLES))
        if rng.random() < cfg.low_activity_users:
            n = int(rng.integers(3, 5))
        else:
            n = min(120, 4 + int(rng.geometric(1.0 / (cfg.mean_interactions - 4.0))))
        u_start = start + int(rng.random() * 0.7 * span)
        u_end = min(start + span - 1, u_start + int(rng.uniform(0.2, 1.0) * span))
        times = np.sort(rng.integers(u_start, u_end, size=n))
        preferred = rng.random(n) < cfg.preferred_share
        cats = prefs[rng.choice(k, size=n, p=pref_w)]
        in_style = rng.random(n) < cfg.style_share
        draws = rng.random(n)
        unseen = np.ones(len(reviewed), dtype=bool)
        for t, pref, cat, sty, r in zip(times, preferred, cats, in_style, draws, strict=True):
            # preferred: the category (in the user's style or not); noise: any item
            idx = (styled[cat][style] if sty else members[cat]) if pref else everything
            cw = np.cumsum(_weights(pop, launch, unseen, idx, t, cfg))
            if len(cw) == 0 or cw[-1] <= 0:
                idx = members[cat] if pref else everything  # nothing launched in style yet
                cw = np.cumsum(_weights(pop, launch, unseen, idx, t, cfg))
                if cw[-1] <= 0:
                    continue
            j = int(idx[min(len(idx) - 1, int(np.searchsorted(cw, r * cw[-1], side="right")))])
            unseen[j] = False
            out.append((user, reviewed[j].asin, int(t)))
    # Sparse items (popularity 0, never drawn above): 1-4 reviews from random users.
    for it in reviewed:
        if it.sparse:
            for u in rng.choice(len(users), size=int(rng.integers(1, 5)), replace=False):
                t = int(rng.integers(max(start, it.launch), start + span))
                out.append((users[int(u)], it.asin, t))
    # Duplicates: an exact copy (same time) or a later re-review of the same item.
    n_dup = int(round(cfg.duplicate_share * len(out)))
    for j in rng.choice(len(out), size=n_dup, replace=False):
        u, a, t = out[int(j)]
        later = rng.random() < 0.5
        t2 = min(start + span - 1, t + int(rng.integers(1, 120)) * 86400) if later else t
        out.append((u, a, t2))
    return out


def _weights(
    pop: np.ndarray,
    launch: np.ndarray,
    unseen: np.ndarray,
    idx: np.ndarray,
    t: int,
    cfg: MiniConfig,
) -> np.ndarray:
    """Choice weights at time ``t``: popularity x novelty, zero before launch or when seen."""
    age_days = (t - launch[idx]) / 86400.0
    novelty = 1.0 + cfg.novelty_boost * np.exp(-np.clip(age_days, 0.0, None) / cfg.novelty_days)
    return pop[idx] * novelty * ((age_days >= 0) & unseen[idx])


# --------------------------------------------------------------------------------------------
# Text


def _word(
    rng: np.random.Generator,
    item: _Item,
    p_group: float = 0.5,
    p_style: float = 0.08,
    p_own: float = 0.25,
) -> str:
    """One content word: shared group vocabulary, own words, noise or a generic word."""
    cat = CATEGORIES[item.category]
    r = rng.random()
    if r < p_style:  # the style's tone word
        return _pick(rng, STYLES[item.style][1])
    r = rng.random()
    if r < p_group:
        return _pick(rng, WORD_GROUPS[cat.words])
    r -= p_group
    if item.own_words and r < p_own:
        return _pick(rng, cat.own_words)
    if r > 1.0 - p_group - 0.1:  # noise: another category's shared words
        return _pick(rng, WORD_GROUPS[int(rng.integers(0, len(WORD_GROUPS)))])
    return _pick(rng, GENERIC_WORDS)


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    """A uniform element of ``seq`` (``rng.random()`` is much faster than ``rng.integers``)."""
    return _pick_u(rng.random(), seq)


def _pick_u(u: float, seq: Sequence[Any]) -> Any:
    """The element of ``seq`` that the uniform number ``u`` in [0, 1) selects."""
    return seq[min(len(seq) - 1, int(u * len(seq)))]


_DESC_TEMPLATES = (
    "Our {a} {b} is made for {c} {d} moments.",
    "This {a} {b} keeps every {c} {d} simple.",
    "A {a} and {b} pick for {c} {d} days.",
    "Parents love the {a} {b} for its {c} {d}.",
    "Designed with a {a} {b}, it makes {c} {d} easy.",
    "The {a} {b} pairs well with any {c} {d}.",
)
_FEATURE_TEMPLATES = (
    "{A} {b} design",
    "{A} and {b} materials",
    "Great for {a} {b}",
    "Includes {a} {b}",
    "{A} {b}: easy to clean",
)


def _text(
    rng: np.random.Generator, template: str, item: _Item, p_style: float = 0.08, p_own: float = 0.25
) -> str:
    a, b, c, d = (_word(rng, item, p_style=p_style, p_own=p_own) for _ in range(4))
    return template.format(a=a, b=b, c=c, d=d, A=a.capitalize())


def _meta_record(rng: np.random.Generator, cfg: MiniConfig, item: _Item, pool: dict) -> dict:
    brand = BRANDS[(item.category * 3 + int(rng.integers(0, 7))) % len(BRANDS)]
    n_title = int(rng.integers(3, 6))
    title_words = [
        _word(rng, item, 0.55, cfg.style_word_prob, cfg.own_word_prob).capitalize()
        for _ in range(n_title)
    ]
    if rng.random() < cfg.style_title_share:
        title_words.insert(0, _pick(rng, STYLES[item.style][1]).capitalize())
    title = f"{brand} " + " ".join(title_words)
    suffix = rng.random()
    if suffix < 0.2:
        title += f", {int(rng.integers(2, 6))} Pack"
    elif suffix < 0.3:
        title += " for Boys and Girls"
    features = [
        _text(rng, _pick(rng, _FEATURE_TEMPLATES), item, cfg.style_word_prob, cfg.own_word_prob)
        for _ in range(int(rng.integers(2, 6)))
    ]
    description = [
        " ".join(
            _text(rng, _pick(rng, _DESC_TEMPLATES), item, cfg.style_word_prob, cfg.own_word_prob)
            for _ in range(int(rng.integers(1, 3)))
        )
        for _ in range(int(rng.integers(1, 3)))
    ]
    if rng.random() < 0.05:
        description = [f"<b>{description[0]}</b><br>"] + description[1:]
    if rng.random() < 0.03:
        description = []
    dept = DEPARTMENTS[(item.category + int(rng.random() < 0.2)) % len(DEPARTMENTS)]
    category = ["Mini", dept] if rng.random() < 0.6 else ["Mini", dept, "Baby &amp; Kids"]
    price = "" if rng.random() < 0.08 else f"${rng.integers(4, 60)}.{rng.integers(0, 100):02d}"
    url_hi = f"{IMAGE_BASE_URL}{item.asin}.jpg"
    url_thumb = f"{IMAGE_BASE_URL}{item.asin}{_pick(rng, IMAGE_SIZE_MODIFIERS)}.jpg"
    if item.image_status == IMAGE_NO_URL:
        image_url, image_hi = [], []
    elif item.image_status == IMAGE_OK and rng.random() < cfg.thumb_only_share:
        image_url, image_hi = [url_thumb], []
    else:
        image_url, image_hi = [url_thumb], [url_hi]
    same = pool[item.category]
    also_buy = [a for a in rng.choice(same, size=min(3, len(same))) if a != item.asin]
    also_view = [a for a in rng.choice(same, size=min(4, len(same))) if a != item.asin]
    if rng.random() < 0.5:
        also_buy = []
    if rng.random() < 0.4:
        also_view = []
    rank_n = int(rng.integers(1000, 900000))
    date = (
        dt.datetime.fromtimestamp(item.launch, tz=dt.UTC).strftime("%B %-d, %Y")
        if rng.random() < 0.7
        else ""
    )
    details = {}
    if rng.random() < 0.6:
        details = {
            "Item Weight:": f"{rng.integers(2, 40)} ounces",
            "ASIN:": item.asin,
        }
    main_cat = "Mini Products"
    if rng.random() < 0.02:
        main_cat = (
            '<img src="https://images.amazon-mini.invalid/images/G/01/nav2/logo.png" '
            'class="nav-categ-image" alt="Mini Products"/>'
        )
    # Key order as in the 2018 files.
    return {
        "category": category,
        "tech1": "",
        "description": description,
        "fit": "",
        "title": title,
        "also_buy": also_buy,
        "tech2": "",
        "brand": brand,
        "feature": features,
        "rank": f"{rank_n:,} in Mini Products (",
        "also_view": also_view,
        "details": details,
        "main_cat": main_cat,
        "similar_item": "",
        "date": date,
        "price": price,
        "asin": item.asin,
        "imageURL": image_url,
        "imageURLHighRes": image_hi,
    }


def _meta_lines(rng: np.random.Generator, cfg: MiniConfig, items: list[_Item]) -> list[str]:
    pool: dict[int, list[str]] = {}
    for it in items:
        pool.setdefault(it.category, []).append(it.asin)
    lines = [_dumps(_meta_record(rng, cfg, it, pool)) for it in items]
    # The 2018 metadata repeats some products verbatim: keep a few exact duplicate lines.
    for j in sorted(rng.choice(len(lines), size=3, replace=False), reverse=True):
        lines.insert(int(j) + 1, lines[int(j)])
    return lines


_SUMMARIES_GOOD = ("Five Stars", "Love it", "Great {w}", "Perfect {w}", "Works great", "Cute!")
_SUMMARIES_MID = ("Four Stars", "Good {w}", "Nice but small", "Pretty good")
_SUMMARIES_BAD = ("Three Stars", "Not as pictured", "Broke quickly", "Disappointed", "One Star")
_REVIEW_TEMPLATES = (
    "Bought this {w} for my {who} and {verdict}.",
    "The {w} arrived fast. {Verdict}.",
    "{Verdict}. The {w} is {adj} and {adj2}.",
    "We use the {w} every day; {verdict}.",
    "Second {w} we bought. {Verdict}, {adj} quality.",
)
_WHO = ("daughter", "son", "niece", "grandson", "twins", "toddler", "newborn", "friend")
_VERDICT = {
    5: ("we love it", "highly recommend", "exactly what we needed", "it is perfect"),
    4: ("pretty happy with it", "it works well", "good value"),
    3: ("it is okay", "does the job", "mixed feelings"),
    2: ("not great", "expected better", "a bit flimsy"),
    1: ("returned it", "fell apart", "would not buy again"),
}
_ADJ = ("soft", "sturdy", "cute", "small", "bright", "light", "solid", "simple", "nice")


def _review_lines(
    rng: np.random.Generator,
    cfg: MiniConfig,
    items: list[_Item],
    interactions: list[tuple[str, str, int]],
) -> list[str]:
    by_asin = {it.asin: it for it in items}
    names: dict[str, str] = {}
    records = []
    seen_pairs: dict[tuple[str, str], dict] = {}
    rating_cdf = np.cumsum([0.58, 0.22, 0.1, 0.05, 0.05])
    # One row of uniforms per review: drawing in bulk is ~50x faster than scalar draws.
    uniforms = rng.random((len(interactions), 17))
    for (u, a, t), x in zip(interactions, uniforms.tolist(), strict=True):
        if u not in names:
            names[u] = f"{_pick_u(x[0], FIRST_NAMES)} {chr(65 + int(x[1] * 26))}."
        prev = seen_pairs.get((u, a))
        if prev is not None and prev["unixReviewTime"] == t:
            records.append(dict(prev))  # an exact duplicate line
            continue
        item = by_asin[a]
        overall = 5 - min(4, int(np.searchsorted(rating_cdf, x[2], side="right")))
        word = _pick_u(x[3], WORD_GROUPS[CATEGORIES[item.category].words])
        verdict = _pick_u(x[4], _VERDICT[overall])
        text = _pick_u(x[5], _REVIEW_TEMPLATES).format(
            w=word,
            who=_pick_u(x[6], _WHO),
            verdict=verdict,
            Verdict=verdict.capitalize(),
            adj=_pick_u(x[7], _ADJ),
            adj2=_pick_u(x[8], _ADJ),
        )
        summ = (
            _SUMMARIES_GOOD if overall >= 5 else _SUMMARIES_MID if overall >= 4 else _SUMMARIES_BAD
        )
        day = dt.datetime.fromtimestamp(t, tz=dt.UTC)
        rec: dict[str, Any] = {"overall": float(overall)}
        if x[9] < 0.12:
            votes = 2 + int(x[10] * 10) ** 2 // 7
            rec["vote"] = f"{votes * 600:,}" if x[10] > 0.99 else str(votes)
        rec["verified"] = x[11] < 0.88
        rec["reviewTime"] = f"{day.month:02d} {day.day}, {day.year}"
        rec["reviewerID"] = u
        rec["asin"] = a
        if x[12] < 0.4:
            key = _pick_u(x[13], ("Color:", "Size:", "Style:"))
            value = _pick_u(x[14], COLOUR_NAMES if key == "Color:" else SIZE_NAMES)
            rec["style"] = {key: f" {value}"}
        rec["reviewerName"] = names[u]
        rec["reviewText"] = text
        rec["summary"] = _pick_u(x[16], summ).format(w=word)
        rec["unixReviewTime"] = int(t)
        if x[15] < 0.01:
            rec["image"] = [f"{REVIEW_IMAGE_BASE_URL}{int(x[15] * 100 * 2**40):010x}._SY88.jpg"]
        seen_pairs[(u, a)] = rec
        records.append(rec)
    # The 2018 5-core files are grouped by item.
    records.sort(key=lambda r: (r["asin"], r["unixReviewTime"], r["reviewerID"]))
    return [_dumps(r) for r in records]


# --------------------------------------------------------------------------------------------
# Images


def _shape_points(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple]:
    def poly(n: int, radii: Sequence[float], phase: float = 0.0) -> list[tuple]:
        pts = []
        for j in range(n * len(radii)):
            ang = rot + phase + 2 * math.pi * j / (n * len(radii))
            rr = radii[j % len(radii)]
            pts.append((cx + rr * math.cos(ang), cy + rr * math.sin(ang)))
        return pts

    if shape == "square":
        return poly(4, [r * 1.3], math.pi / 4)
    if shape == "triangle":
        return poly(3, [r * 1.3], -math.pi / 2)
    if shape == "diamond":  # a rhombus, longer along the rotation axis
        c, s = math.cos(rot), math.sin(rot)
        a, b = r * 1.35, r * 0.8
        return [(cx + a * c, cy + a * s), (cx - b * s, cy + b * c),
                (cx - a * c, cy - a * s), (cx + b * s, cy - b * c)]  # fmt: skip
    if shape == "star":
        return poly(5, [r * 1.3, r * 0.55], -math.pi / 2)
    if shape == "hexagon":
        return poly(6, [r * 1.15])
    raise ValueError(shape)


def _draw_shape(draw: Any, shape: str, cx: float, cy: float, r: float, rot: float, fill, edge):
    box = (cx - r, cy - r, cx + r, cy + r)
    w = max(2, int(r / 5))
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=edge, width=w)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(4, int(r / 2.6)))
    elif shape == "cross":
        t = r * 0.38
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill)
    elif shape == "bars":
        t = r * 0.22
        for k in (-2, 0, 2):
            y = cy + k * t * 1.6
            draw.rectangle((cx - r, y - t * 0.6, cx + r, y + t * 0.6), fill=fill)
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, rot), fill=fill, outline=edge, width=w)


def _image_bytes(rng: np.random.Generator, cfg: MiniConfig, item: _Item) -> bytes | None:
    """The file content of the item's image (None: no file), drawn even when not written.

    Every item consumes the same amount of randomness whatever its status, so changing one
    item's status does not change the pictures of the others.
    """
    from PIL import Image, ImageDraw

    px = cfg.image_px
    cat = CATEGORIES[item.category]
    mains, accents = PALETTES[cat.palette]
    if rng.random() < 0.06:  # a few items come in another colourway
        mains, accents = PALETTES[int(rng.integers(0, len(PALETTES)))]
    jitter = rng.integers(-18, 19, size=3)
    main = tuple(
        int(np.clip(c + j, 0, 255)) for c, j in zip(_pick(rng, mains), jitter, strict=True)
    )
    if item.style == 0:  # pastel: towards white
        main = tuple(int(0.45 * c + 0.55 * 250) for c in main)
    elif item.style == 2:  # dark
        main = tuple(int(0.5 * c) for c in main)
    accent = _pick(rng, accents)
    grey = int(rng.integers(205, 250))
    tint = rng.integers(-12, 13, size=3)
    bg = tuple(int(np.clip(grey + t, 0, 255)) for t in tint)
    img = Image.new("RGB", (px, px), bg)
    draw = ImageDraw.Draw(img)
    # Background texture: faint diagonal lines or dots in a darker shade of the background.
    shade = tuple(max(0, c - int(rng.integers(12, 30))) for c in bg)
    step = int(rng.integers(8, 16))
    if rng.random() < 0.5:
        for k in range(-px, px, step):
            draw.line((k, 0, k + px, px), fill=shade, width=1)
    else:
        for y in range(step // 2, px, step):
            for x in range(step // 2, px, step):
                draw.point((x, y), fill=shade)
    # Distractors: small shapes in random colours, also drawn for items without a file.
    for _ in range(int(rng.integers(0, 3))):
        col = tuple(int(c) for c in rng.integers(60, 230, size=3))
        x, y, s = (float(v) for v in rng.uniform([8, 8, 3], [px - 8, px - 8, 7]))
        draw.ellipse((x - s, y - s, x + s, y + s), fill=col)
    r = float(rng.uniform(0.22, 0.34)) * px
    cx, cy = (float(v) for v in rng.uniform(px * 0.38, px * 0.62, size=2))
    rot = float(rng.uniform(0, 2 * math.pi))
    if item.generic_shape:
        n = 8
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=n))
        radii = rng.uniform(0.7, 1.15, size=n) * r
        pts = [
            (cx + rr * math.cos(a), cy + rr * math.sin(a))
            for a, rr in zip(angles, radii, strict=True)
        ]
        draw.polygon(pts, fill=main, outline=accent, width=2)
    elif cat.shape == "crescent":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=main)
        off = r * 0.55
        draw.ellipse((cx - r + off, cy - r - off * 0.4, cx + r + off, cy + r - off * 0.4), fill=bg)
    else:
        _draw_shape(draw, cat.shape, cx, cy, r, rot, main, accent)
    # Accent highlight: a small dot of the accent colour on the object.
    hx, hy = cx - r * 0.3, cy - r * 0.3
    draw.ellipse((hx - 3, hy - 3, hx + 3, hy + 3), fill=accent)
    arr = np.asarray(img, dtype=np.int16)
    noise = rng.normal(0.0, 4.0, size=arr.shape).round().astype(np.int16)
    img = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=cfg.jpeg_quality, optimize=True)
    jpeg = buf.getvalue()
    cut = float(rng.uniform(0.3, 0.6))
    if item.image_status == IMAGE_OK:
        return jpeg
    if item.image_status == IMAGE_TRUNCATED:
        return jpeg[: int(len(jpeg) * cut)]
    if item.image_status == IMAGE_NOT_JPEG:
        return (
            b"<html><head><title>404 Not Found</title></head>"
            b"<body><h1>Not Found</h1></body></html>\n"
        )
    if item.image_status == IMAGE_EMPTY:
        return b""
    return None  # IMAGE_NO_URL, IMAGE_MISSING


# --------------------------------------------------------------------------------------------
# Files


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _gzip_lines(name: str, lines: Sequence[str]) -> bytes:
    """Gzip the JSON lines with a fixed header (name, ``mtime=0``) so bytes are reproducible."""
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def _latent_tsv(items: list[_Item]) -> str:
    rows = ["asin\tcategory\tcategory_name\tstyle\timage_status\treviewed\tlaunch"]
    rows += [
        f"{it.asin}\t{it.category}\t{CATEGORIES[it.category].name}\t{STYLES[it.style][0]}"
        f"\t{it.image_status}\t{int(it.reviewed)}\t{it.launch}"
        for it in items
    ]
    return "\n".join(rows) + "\n"


def _readme(seed: int, cfg: MiniConfig, stats: dict[str, Any]) -> str:
    defaults = dataclasses.asdict(MiniConfig())
    changed = {k: v for k, v in dataclasses.asdict(cfg).items() if defaults[k] != v}
    cats = "\n".join(
        f"| {j} | {c.name} | {c.shape} | {j // 2} | {c.words} | {', '.join(c.own_words)} |"
        for j, c in enumerate(CATEGORIES)
    )
    status = ", ".join(f"{k}: {v}" for k, v in stats.get("image_status", {}).items())
    styles = "; ".join(f"{name} ({', '.join(words)})" for name, words in STYLES)
    degrees = " / ".join(
        str(stats[k]) for k in ("min_item_degree", "median_item_degree", "max_item_degree")
    )
    return f"""# amazon-mini: a SYNTHETIC dataset in the Amazon 2018 format

**Everything here is synthetic.** No real user, product, review or photo: the files were
generated by `scripts/amazon_mini.py` (seed {seed}{", config " + str(changed) if changed else ""}).
They exist so that the alignrec pipeline has a small default input that runs offline in minutes
and still has structure to learn. Licence: Apache-2.0, like the code.

Rebuild and check (byte-identical for the same seed, numpy and Pillow):

    python scripts/make_amazon_mini.py --out alignrec_data/mini --seed {seed}
    python scripts/make_amazon_mini.py --check

## Files

| file | content |
| --- | --- |
| `{REVIEWS_FILE}` | reviews, gzipped JSON lines (fields below), grouped by `asin` |
| `{META_FILE}` | metadata, gzipped JSON lines (fields below) |
| `images/<asin>.jpg` | {cfg.image_px}x{cfg.image_px} JPEG images behind the metadata image URLs |
| `{LATENT_FILE}` | ground truth, not an Amazon file (see below) |
| `README.md` | this file (also generated) |

- Review fields (Amazon 2018): `overall, vote (sometimes), verified, reviewTime, reviewerID,
  asin, style (sometimes), reviewerName, reviewText, summary, unixReviewTime, image (rarely)`.
- Metadata fields (Amazon 2018): `category, tech1, description, fit, title, also_buy, tech2,
  brand, feature, rank, also_view, details, main_cat, similar_item, date, price, asin,
  imageURL, imageURLHighRes`.
- `{LATENT_FILE}` (tab-separated, header): `asin, category, category_name, style,
  image_status, reviewed, launch`; `image_status` is one of `ok, no_url, missing, truncated,
  not_jpeg, empty`; `reviewed` is 0 for metadata-only items; `launch` is unix seconds.
  The pipeline never reads it; tests and evaluations use it as the true item category.

Image URLs point at `{IMAGE_BASE_URL}<asin>.jpg` (`imageURLHighRes`) and the same with a
size modifier such as `._SS40_` (`imageURL`, some items list only this one); the `.invalid`
host never resolves, so the images stage maps that prefix to this folder's `images/`.

## Structure

Ten latent categories; each shows in the image (palette + shape) and in the text (shared
vocabulary + own words). Categories `2k, 2k+1` share a palette; categories `2k+1, 2k+2`
(mod 10) share a vocabulary; only some items use their category's own words
({cfg.own_words_share:.0%}) and some draw a generic blob instead of their shape
({cfg.generic_shape_share:.0%}), so each modality alone is ambiguous and both together are clearer.

| id | name | shape | palette | vocabulary | own words |
| --- | --- | --- | --- | --- | --- |
{cats}

Each item also has one of three styles (a colour tone in the image; a tone word in
{cfg.style_title_share:.0%} of titles and {cfg.style_word_prob:.0%} of text words): {styles}.

Users prefer 1-3 categories ({cfg.preferred_share:.0%} of their interactions, the rest any item)
and one style ({cfg.style_share:.0%} of their preferred-category interactions), with a Zipf
popularity (exponent {cfg.popularity_exponent}) inside each category; reviews span
{cfg.days} days from {cfg.start}; {cfg.late_item_share:.0%} of items launch during that window.

Blemishes to handle: {stats["duplicates"]} duplicate reviews (same user and item, same or later
time: keep the earliest); users with 3-4 reviews and {cfg.n_sparse_items} items with 1-4 reviews
(filtering to the 5-core removes them); 3 duplicate metadata
lines; {cfg.n_meta_only_items} metadata lines for items without reviews; HTML in category
paths, descriptions and `main_cat`; image problems (counted over the 5-core items): {status}.
`missing` items have a URL but no file (404); `truncated`, `not_jpeg` and `empty` files exist
but do not decode.

## Statistics

| | count |
| --- | --- |
| review lines | {stats["raw_reviews"]:,} |
| duplicate (user, item) lines | {stats["duplicates"]:,} |
| users / items in the review file | {stats["raw_users"]:,} / {stats["raw_items"]:,} |
| users after dedupe + 5-core | {stats["users"]:,} |
| items after dedupe + 5-core | {stats["items"]:,} |
| interactions after dedupe + 5-core | {stats["interactions"]:,} |
| density | {stats["density"]} |
| item degree min / median / max | {degrees} |
"""
