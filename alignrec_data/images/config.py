"""The ``images`` section of ``params.yaml`` (:class:`ImagesConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from alignrec_data.config import check_ranges
from alignrec_data.http import USER_AGENT
from alignrec_data.images.fetch import FetchSettings
from alignrec_data.images.validate import ImageSettings

T = TypeVar("T")

# Settings that change the stored bytes: shards made with others cannot be mixed in.
ENCODE_KEYS = ("shorter_side", "jpeg_quality", "jpeg_subsampling")
# Settings that decide acceptance: when they change, earlier failures are retried.
ACCEPT_KEYS = ("max_pixels", "min_side", "max_bytes")


@dataclass(frozen=True)
class ImagesConfig:
    """The ``images`` section of ``params.yaml``.

    Attributes:
        shorter_side: Resize so the shorter side has this many pixels (never upscaled).
        jpeg_quality: Quality of the stored JPEG (1-95).
        jpeg_subsampling: Chroma subsampling of the stored JPEG: 0 = 4:4:4, 1 = 4:2:2,
            2 = 4:2:0.
        max_pixels: Largest ``width * height`` decoded; larger images are rejected from the
            header alone as ``decompression-bomb``.
        min_side: Smallest accepted shorter side in pixels (``too-small`` below: placeholder
            1x1 GIFs).
        max_bytes: Largest response body per image in bytes (``too-large`` above; never read
            further).
        concurrency: Worker threads fetching and processing images.
        per_host_rate: Requests per second to one host (0 = unlimited).
        retries: Extra attempts on time-outs, connection errors and the statuses in
            :data:`alignrec_data.http.RETRY_STATUSES` (408, 429, 500, 502, 503, 504).
        backoff: Seconds before the first retry, doubling each retry (unless Retry-After).
        max_retry_after: Cap on any retry wait, Retry-After included, in seconds.
        timeout: Seconds to connect and for each read.
        total_timeout: Seconds for one whole request (headers and body) per attempt, also
            while bytes trickle (a watchdog cuts the connection at the deadline).
        host_failures: Connection-level failures in a row (DNS, refused, connect time-out,
            TLS, closed before any answer) after which a host is not asked again this run;
            its items are recorded as ``host-down`` and fetched again by the next run
            (0 = never stop asking).
        max_requests_per_item: Most HTTP requests for one item, over all its candidate URLs
            and retries.
        shard_size_mb: Start a new shard after this many MB of stored JPEG bytes.
        user_agent: User-Agent header sent to image servers.
    """

    shorter_side: int = 256  # 224-px encoder crops fit; ~15-25 kB a JPEG
    jpeg_quality: int = 90
    jpeg_subsampling: int = 2  # 4:2:0, libjpeg's default
    max_pixels: int = 40_000_000  # Amazon hi_res images are ~2-4 Mpx
    min_side: int = 16
    max_bytes: int = 16_000_000
    concurrency: int = 16
    per_host_rate: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 60.0
    timeout: float = 20.0
    total_timeout: float = 60.0
    host_failures: int = 5
    max_requests_per_item: int = 4
    shard_size_mb: float = 256.0
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        """Reject values the image stage cannot run with."""
        check_ranges(
            self,
            "images",
            {
                "shorter_side": (self.shorter_side >= 1, ">= 1 pixel"),
                "jpeg_quality": (1 <= self.jpeg_quality <= 95, "between 1 and 95"),
                "jpeg_subsampling": (self.jpeg_subsampling in (0, 1, 2), "0, 1 or 2"),
                "max_pixels": (self.max_pixels >= 1, ">= 1"),
                "min_side": (self.min_side >= 1, ">= 1 pixel"),
                "max_bytes": (self.max_bytes >= 1, ">= 1"),
                "concurrency": (self.concurrency >= 1, ">= 1"),
                "per_host_rate": (self.per_host_rate >= 0, ">= 0 (0 = unlimited)"),
                "retries": (self.retries >= 0, ">= 0"),
                "backoff": (self.backoff >= 0, ">= 0 seconds"),
                "max_retry_after": (self.max_retry_after >= 0, ">= 0 seconds"),
                "timeout": (self.timeout > 0, "> 0 seconds"),
                "total_timeout": (self.total_timeout > 0, "> 0 seconds"),
                "host_failures": (self.host_failures >= 0, ">= 0 (0 = never stop asking)"),
                "max_requests_per_item": (self.max_requests_per_item >= 1, ">= 1"),
                "shard_size_mb": (self.shard_size_mb > 0, "> 0"),
            },
        )

    def image_settings(self) -> ImageSettings:
        """The validation and encoding settings."""
        return self._pick(ImageSettings)

    def fetch_settings(self) -> FetchSettings:
        """The network settings (one HTTP connection per host and worker thread)."""
        return self._pick(FetchSettings, pool_size=self.concurrency)

    def _pick(self, cls: type[T], **other: Any) -> T:
        """A ``cls`` of the same-named settings, plus ``other``."""
        same = {f.name: getattr(self, f.name) for f in fields(cls) if f.name not in other}
        return cls(**same, **other)

    def recorded_settings(self) -> dict[str, Any]:
        """Settings recorded with the shards and index (those that change the outcome)."""
        return {k: getattr(self, k) for k in (*ENCODE_KEYS, *ACCEPT_KEYS)}
