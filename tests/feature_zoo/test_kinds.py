"""Every transformers kind, from a params entry to the feature file, against a plain forward.

Tiny random-initialised BERT, ViT and CLIP models are saved with ``save_pretrained`` and
loaded by path; the vectors in the feature files must equal a plain transformers forward pass
on the same texts and decoded images, items without image / with empty text get zero rows and
``missing``, and the provenance reads back through ``feature_info``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alignrec_data.config import load_section
from alignrec_data.errors import UsageError
from alignrec_data.feature_info import feature_info
from alignrec_data.features import read_features
from alignrec_data.paths import DatasetPaths
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.extractors import weights_sha256
from alignrec_model.preprocess import load_item_images
from tests.encoder._data import write_dataset
from tests.feature_zoo._models import SIDE, tiny_models

N = 14
EMPTY_TEXT = (3, 9)  # items with an empty / blank text
NO_IMAGE = (4, 9, 13)  # items without image (item 9 has neither)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetPaths:
    rng = np.random.default_rng(0)
    words = ["red", "wool", "scarf", "blue", "cotton", "shirt", "baby", "bottle", "soft"]
    texts, images = [], []
    for i in range(N):
        texts.append(" " if i == 9 else "" if i in EMPTY_TEXT else " ".join(rng.choice(words, 4)))
        px = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)  # not square: resized
        images.append(None if i in NO_IMAGE else Image.fromarray(px))
    return write_dataset(tmp_path_factory.mktemp("data") / "data", "zoo", texts, images)


def run(paths: DatasetPaths, tmp: Path, entries: list, **extract_keys) -> dict:
    params = tmp / "params.yaml"
    section = {"variants": entries, "num_threads": 1, **extract_keys}
    params.write_text(yaml.safe_dump({"extract": section}))
    return extract(
        paths.root.parent, paths.root.name, load_section(params, "extract", ExtractConfig)
    )


def texts_and_images(paths: DatasetPaths, side: int):
    import pandas as pd

    items = pd.read_parquet(paths.prepared / "items.parquet")
    texts = items["text"].tolist()
    images, has_image = load_item_images(paths.images, items["item_id"].tolist(), side)
    return texts, images, has_image


def plain_text(folder: Path, texts: list[str], pooling: str, max_length: int) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    if pooling == "cls":
        return h[:, 0].numpy()
    m = enc["attention_mask"].unsqueeze(-1).float()
    return ((h * m).sum(1) / m.sum(1)).numpy()


def pixels(folder: Path, images: torch.Tensor) -> torch.Tensor:
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(folder)
    return proc(images=[im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt")[
        "pixel_values"
    ]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_hf_text_equals_a_plain_forward_and_zeroes_empty_texts(
    models, dataset, tmp_path: Path, pooling: str
) -> None:
    entry = {"name": f"bert-{pooling}", "kind": "hf-text", "model": str(models["bert"])}
    metrics = run(dataset, tmp_path, [{**entry, "pooling": pooling, "batch_size": 4}])
    keys, x, missing = read_features(dataset.features / f"bert-{pooling}.parquet")
    texts, _, _ = texts_and_images(dataset, SIDE)
    has_text = np.array([bool(t.strip()) for t in texts])
    assert x.shape == (N, 32) and list(missing) == list(~has_text)
    assert metrics["variants"][f"bert-{pooling}"] == {"dim": 32, "missing": 2}
    # One batch of all texts (longer padding) against batches of 4: the same vectors.
    ref = plain_text(models["bert"], [t for t in texts if t.strip()], pooling, 128)
    np.testing.assert_allclose(x[has_text], ref, atol=1e-5)
    assert not x[~has_text].any()
    info = feature_info(dataset.features / f"bert-{pooling}.parquet")
    assert (info.kind, info.modality, info.dim, info.pooling) == ("hf-text", "text", 32, pooling)
    assert info.model == {"path": str(models["bert"]), "sha256": weights_sha256(models["bert"])}


def test_normalize_and_max_length(models, dataset, tmp_path: Path) -> None:
    entry = {"name": "b", "kind": "hf-text", "model": str(models["bert"]), "normalize": True}
    run(dataset, tmp_path, [{**entry, "max_length": 5}])
    _, x, missing = read_features(dataset.features / "b.parquet")
    texts, _, _ = texts_and_images(dataset, SIDE)
    ref = unit(plain_text(models["bert"], [t for t in texts if t.strip()], "mean", 5))
    np.testing.assert_allclose(x[~missing], ref, atol=1e-5)
    assert feature_info(dataset.features / "b.parquet").extra == {
        "normalize": True,
        "max_length": 5,
    }


@pytest.mark.parametrize("pooling", ["pooler", "mean", "cls"])
def test_hf_image_equals_a_plain_forward(models, dataset, tmp_path: Path, pooling: str) -> None:
    from transformers import AutoModel

    entry = {"name": "vit", "kind": "hf-image", "model": str(models["vit"]), "pooling": pooling}
    run(dataset, tmp_path, [{**entry, "batch_size": 3}])
    _, x, missing = read_features(dataset.features / "vit.parquet")
    _, images, has_image = texts_and_images(dataset, SIDE)
    assert list(np.flatnonzero(missing)) == list(NO_IMAGE) and not x[missing].any()
    with torch.no_grad():
        out = AutoModel.from_pretrained(models["vit"]).eval()(
            pixel_values=pixels(models["vit"], images[torch.from_numpy(has_image)])
        )
    ref = {
        "pooler": out.pooler_output,
        "mean": out.last_hidden_state.mean(1),
        "cls": out.last_hidden_state[:, 0],
    }[pooling]
    np.testing.assert_allclose(x[has_image], ref.numpy(), atol=1e-5)
    info = feature_info(dataset.features / "vit.parquet")
    assert (info.modality, info.pooling, info.extra["image_size"]) == ("image", pooling, SIDE)


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_hf_clip_writes_three_files_with_the_joint_rules(models, dataset, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = models["clip"]
    metrics = run(dataset, tmp_path, [{"name": "clip", "kind": "hf-clip", "model": str(folder)}])
    assert {"clip", "clip-image", "clip-text"} <= set(metrics["variants"])
    feats = {v: read_features(dataset.features / f"{v}.parquet") for v in metrics["variants"]}
    texts, images, has_image = texts_and_images(dataset, SIDE)
    has_text = np.array([bool(t.strip()) for t in texts])
    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        enc = tok([t for t in texts if t.strip()], padding=True, return_tensors="pt")
        txt = _features(model.get_text_features(enc["input_ids"], enc["attention_mask"])).numpy()
        px = pixels(folder, images[torch.from_numpy(has_image)])
        img = _features(model.get_image_features(pixel_values=px)).numpy()
    np.testing.assert_allclose(feats["clip-text"][1][has_text], txt, atol=1e-5)
    np.testing.assert_allclose(feats["clip-image"][1][has_image], img, atol=1e-5)
    _, joint, missing = feats["clip"]
    both = has_image & has_text
    want = np.zeros((N, 16), dtype=np.float32)
    full_img = np.zeros_like(want)
    full_img[has_image] = unit(img)
    full_txt = np.zeros_like(want)
    full_txt[has_text] = unit(txt)
    want[both] = unit(full_img[both] + full_txt[both])
    only_text, only_image = has_text & ~has_image, has_image & ~has_text
    want[only_text], want[only_image] = full_txt[only_text], full_img[only_image]
    np.testing.assert_allclose(joint, want, atol=1e-5)
    assert list(missing) == list(~both) and not joint[~has_image & ~has_text].any()
    info = feature_info(dataset.features / "clip.parquet")
    assert info.modality == "joint" and info.without == {"image": "clip-text", "text": "clip-image"}
    assert info.extra["joint"] == "sum" and info.dim == 16
    assert feature_info(dataset.features / "clip-image.parquet").modality == "image"


def test_clip_concat_and_output_subset(models, dataset, tmp_path: Path) -> None:
    entry = {"name": "cc", "kind": "hf-clip", "model": str(models["clip"]), "joint": "concat"}
    metrics = run(dataset, tmp_path, [{**entry, "outputs": ["joint"]}])
    assert list(metrics["variants"]) == ["cc"] and metrics["variants"]["cc"]["dim"] == 32
    _, x, _ = read_features(dataset.features / "cc.parquet")
    assert not x[4, :16].any() and abs(np.linalg.norm(x[4, 16:]) - 1) < 1e-5  # no image
    assert feature_info(dataset.features / "cc.parquet").without == {}  # no same-width files


def test_extraction_is_deterministic(models, dataset, tmp_path: Path) -> None:
    entries = [
        {"name": "clip", "kind": "hf-clip", "model": str(models["clip"])},
        {"name": "vit", "kind": "hf-image", "model": str(models["vit"])},
    ]
    run(dataset, tmp_path, entries)
    names = ["clip", "clip-image", "clip-text", "vit"]
    first = {v: (dataset.features / f"{v}.parquet").read_bytes() for v in names}
    run(dataset, tmp_path, entries)
    assert all((dataset.features / f"{v}.parquet").read_bytes() == b for v, b in first.items())


def test_bad_entries_name_the_key(models, dataset, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pooling.*one of mean, cls"):
        ExtractConfig(variants=({"name": "x", "kind": "hf-text", "model": "/m", "pooling": "max"},))
    with pytest.raises(UsageError, match="kind.*one of hf-text"):
        ExtractConfig(variants=({"name": "x", "kind": "clip"},))
    with pytest.raises(UsageError, match="unknown key.*pool"):
        ExtractConfig(variants=({"name": "x", "kind": "hf-text", "pool": "cls"},))
    with pytest.raises(UsageError, match="two entries write features/clip-text.parquet"):
        ExtractConfig(
            variants=(
                {"name": "clip", "kind": "hf-clip", "model": "/a"},
                {"name": "clip-text", "kind": "hf-text", "model": "/b"},
            )
        )
    with pytest.raises(UsageError, match="bert has no usable AutoImageProcessor"):
        run(dataset, tmp_path, [{"name": "x", "kind": "hf-image", "model": str(models["bert"])}])
