"""One retry policy and one session factory for raw downloads and image fetching."""

from __future__ import annotations

import time
from dataclasses import replace

from alignrec_data.download import DownloadConfig, download_dataset
from alignrec_data.http import RETRY_STATUSES, USER_AGENT, RetryPolicy, make_session
from alignrec_data.images import FetchSettings, ImagesConfig
from tests.download.conftest import FAST, gz_bytes
from tests.download.httpserver import Fault


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(retries=5, backoff_base=0.5, backoff_cap=3.0, retry_after_max=10.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(2) == 1.0  # no Retry-After: the back-off


def test_retry_after_replaces_the_backoff_up_to_its_cap() -> None:
    policy = RetryPolicy(retries=3, backoff_base=0.5, backoff_cap=3.0, retry_after_max=10.0)
    assert policy.delay(1, "7") == 7.0
    assert policy.delay(1, "3600") == 10.0
    assert policy.delay(1, "0") == 0.0
    assert policy.delay(3, "soon") == 2.0  # unreadable: the back-off


def test_both_stages_share_statuses_and_user_agent() -> None:
    download = DownloadConfig().retry_policy()
    images = ImagesConfig().fetch_settings().retry_policy()
    assert download.statuses == images.statuses == RETRY_STATUSES
    assert RETRY_STATUSES == {408, 429, 500, 502, 503, 504}
    assert FetchSettings().user_agent == ImagesConfig().user_agent == USER_AGENT
    # Images: max_retry_after caps the back-off and Retry-After alike.
    assert images.backoff_cap == images.retry_after_max == ImagesConfig().max_retry_after


def test_session_headers_and_policy() -> None:
    with make_session(RetryPolicy(2), accept="image/*", user_agent="ua/1") as s:
        assert (s.headers["User-Agent"], s.headers["Accept"]) == ("ua/1", "image/*")
        assert s.headers["Accept-Encoding"] == "identity"
        assert s.get_adapter("https://x").max_retries.policy == RetryPolicy(2)
    with make_session(RetryPolicy(3, 0.1, 0.2, 0.3)) as s:
        assert s.headers["User-Agent"] == USER_AGENT
        assert s.get_adapter("http://x").max_retries.policy == RetryPolicy(3, 0.1, 0.2, 0.3)
    with make_session(None) as s:
        assert s.get_adapter("http://x").max_retries.total == 0  # the caller retries


def test_download_retries_408(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(50))})
    server.add_fault("/r.json.gz", Fault.status(408))

    [res] = download_dataset(spec, raw_dir, config=FAST, progress=False)

    assert res.status == "fetched", res.error
    assert [r.status for r in server.requests] == [408, 200]


def test_download_waits_the_backoff_before_the_first_retry(make_spec, server, raw_dir):
    spec = make_spec({"reviews": ("r.json.gz", gz_bytes(50))})
    server.add_fault("/r.json.gz", Fault.status(503))
    cfg = replace(FAST, backoff_base=0.4, backoff_cap=1.0)

    t0 = time.monotonic()
    [res] = download_dataset(spec, raw_dir, config=cfg, progress=False)

    assert res.status == "fetched", res.error
    assert time.monotonic() - t0 >= 0.38  # backoff_base, as for the images (not 0)
