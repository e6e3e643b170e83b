"""Publishing to a Hub-compatible server on 127.0.0.1.

No Hub-compatible server exists in the package registry, so these tests start a small one
(tests/release/hub_server.py) that answers the routes huggingface_hub's ``create_repo``,
``create_branch``, ``upload_folder``, ``repo_info`` and ``hf_hub_download`` use. The real
``HfApi`` client talks to it over HTTP. ``datasets.load_dataset`` from the Hub is covered by
the local-folder test in test_release.py (same files; the Hub only serves them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.publish import PublishError, publish_release
from alignrec_data.release import ReleaseConfig, build_release
from tests.release.fixtures import make_dataset
from tests.release.hub_server import HubServer

TOKEN = "hf_test_alice_0123456789abcdefXYZ"
BAD_TOKEN = "hf_wrong_token_9876543210zyxwvuts"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch):
    """Lift HF_HUB_OFFLINE for huggingface_hub (it also blocks loopback); restored after."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    b = make_dataset(data_dir, variants={"alignrec": 8, "minilm-text": 6}, extras=False)
    out = tmp_path_factory.mktemp("rel") / "release"
    build_release(data_dir, "amazon-mini", out, ReleaseConfig(shard_size_mb=0.004))
    return b, out


@pytest.fixture
def hub():
    with HubServer({TOKEN: "alice"}, orgs={"alice": ["lab"]}) as server:
        yield server


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_publish_download_back_and_idempotent(release, hub, online, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    b, out = release
    first = publish_release(out, "lab/mini", endpoint=hub.url, token=TOKEN)
    assert first.committed and hub.n_commits("lab/mini") == 2  # initial + ours
    assert first.total_bytes == sum(len(v) for v in _files(out).values())
    local = _files(out)
    for rel, data in local.items():
        got = hf_hub_download(
            "lab/mini",
            rel,
            repo_type="dataset",
            revision=first.commit,
            endpoint=hub.url,
            token=TOKEN,
            cache_dir=tmp_path / "hub",
        )
        assert hashlib.sha256(Path(got).read_bytes()).digest() == hashlib.sha256(data).digest(), rel

    second = publish_release(out, "lab/mini", endpoint=hub.url, token=TOKEN)
    assert not second.committed and second.commit == first.commit
    assert hub.n_commits("lab/mini") == 2  # nothing new committed
    assert not any(m == "POST" and p.endswith("/commit/main") for m, p in hub.requests[-6:])

    # The loaders read the published repo (manifest + shards via hf_hub_download).
    from alignrec_data.loaders import load_features

    x = load_features(
        "lab/mini", "alignrec", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c"
    )
    np.testing.assert_array_equal(x, b.features["alignrec"])


def test_branch_and_changed_file(release, hub, online, tmp_path: Path) -> None:
    _, out = release
    publish_release(out, "alice/mini", endpoint=hub.url, token=TOKEN)
    res = publish_release(out, "alice/mini", revision="v0.1", endpoint=hub.url, token=TOKEN)
    assert res.revision == "v0.1" and not res.committed  # branch starts from main: same files
    changed = tmp_path / "changed"
    import shutil

    shutil.copytree(out, changed)
    card = changed / "README.md"
    card.write_text(card.read_text() + "\nA note.\n")
    res = publish_release(changed, "alice/mini", revision="v0.1", endpoint=hub.url, token=TOKEN)
    assert res.committed
    repo = hub.repos["alice/mini"]
    head = repo.commits[repo.branches["v0.1"]]
    parent = repo.commits[head.parent]
    assert [p for p in head.files if head.files[p] != parent.files.get(p)] == ["README.md"]


def test_wrong_token_missing_repo_and_no_rights_are_clear(
    release, hub, online, caplog, capsys, tmp_path: Path
) -> None:
    _, out = release
    caplog.set_level(logging.DEBUG)
    with pytest.raises(
        PublishError, match=r"rejected the token \(401 Unauthorized\).*hf auth login"
    ) as err:
        publish_release(out, "alice/mini", endpoint=hub.url, token=BAD_TOKEN)
    assert BAD_TOKEN not in str(err.value)
    with pytest.raises(PublishError, match=r"may not write to bob/mini .*403 Forbidden"):
        publish_release(out, "bob/mini", endpoint=hub.url, token=TOKEN)
    from alignrec_data.loaders import load_features

    with pytest.raises(UsageError, match="Hub dataset repo 'alice/missing' was not found"):
        load_features(
            "alice/missing", "alignrec", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path
        )
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert TOKEN not in text and BAD_TOKEN not in text
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in hub.headers_seen)  # it was sent


def test_dry_run_lists_files_without_network(release, hub, online) -> None:
    _, out = release
    res = publish_release(out, "alice/mini", dry_run=True, endpoint=hub.url)
    assert hub.requests == []
    assert dict(res.files) == {k: len(v) for k, v in _files(out).items()}
    assert res.total_bytes == sum(b for _, b in res.files)


def test_cli_publish_never_prints_the_token(
    release, hub, online, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alignrec_data.cli import cli

    _, out = release
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    runner = CliRunner()
    res = runner.invoke(
        cli, ["-vv", "publish", str(out), "--repo-id", "alice/cli", "--endpoint", hub.url]
    )
    assert res.exit_code == 0, res.output
    assert "published" in res.stdout and TOKEN not in res.output
    res = runner.invoke(
        cli,
        ["publish", str(out), "--repo-id", "alice/cli", "--endpoint", hub.url, "--format", "json"],
    )
    assert json.loads(res.stdout)["committed"] is False and TOKEN not in res.output
    res = runner.invoke(cli, ["publish", str(out), "--repo-id", "alice/cli", "--dry-run"])
    assert (
        res.exit_code == 0 and "dry run: would upload" in res.stdout and "README.md" in res.stdout
    )
    monkeypatch.setenv("HF_TOKEN", BAD_TOKEN)
    res = runner.invoke(
        cli, ["-vv", "publish", str(out), "--repo-id", "alice/cli", "--endpoint", hub.url]
    )
    assert res.exit_code == 1 and "rejected the token" in res.output and BAD_TOKEN not in res.output


def test_publish_checks_the_folder_first(
    release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    _, out = release
    with pytest.raises(UsageError, match="not a Hub repo id; expected ORG/NAME"):
        publish_release(out, "no-slash", dry_run=True)
    with pytest.raises(UsageError, match="has no README.md"):
        publish_release(tmp_path, "alice/x", dry_run=True)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    shard = sorted((broken / "features-alignrec").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match=f"shard features-alignrec/{shard.name} is corrupt"):
        publish_release(broken, "alice/x", dry_run=True)
    # No token anywhere, and offline mode: clear errors before any request.
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "empty_home" / "token"))
    with pytest.raises(UsageError, match="no Hugging Face token found"):
        publish_release(out, "alice/x", endpoint="http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE=1 is set"):
        publish_release(out, "alice/x", endpoint="http://127.0.0.1:9", token=TOKEN)
