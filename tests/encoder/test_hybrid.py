"""The offline hybrid (b): the language experts are MiniLM, the image tokens EfficientNet-Lite0;
and the real-data check on hm-sample (real photos and product text): a short hybrid
pretraining lowers both masked losses and its features put same-product-type items nearer
than chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from alignrec_data.config import load_section
from alignrec_data.errors import UsageError
from alignrec_data.features import read_features
from alignrec_model.encoder import MMEncConfig
from alignrec_model.extract import VARIANTS, ExtractConfig, extract
from alignrec_model.hybrid import build_hybrid, minilm_path
from alignrec_model.preprocess import load_tokenizer, tokenize
from alignrec_model.pretrain import PretrainConfig, pretrain
from tests.conftest import shared_data
from tests.encoder._data import hm_dataset


def test_hybrid_text_side_is_minilm_and_image_side_runs() -> None:
    from transformers import AutoModel

    cfg = MMEncConfig.from_size("hybrid-minilm")
    model = build_hybrid(cfg).eval()
    tok = load_tokenizer("minilm")
    ids, pad = tokenize(tok, ["a red cotton dress with buttons", "jumper"], 128)
    bert = AutoModel.from_pretrained(str(minilm_path())).eval()
    img = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=(~pad).long()).last_hidden_state
        ours = model(input_ids=ids, text_padding_mask=pad).hidden
        joint = model(pixel_values=img, input_ids=ids, text_padding_mask=pad)
    assert float((ref - ours)[~pad].abs().max()) < 1e-4
    assert joint.hidden.shape == (2, 1 + 16 + ids.shape[1], 384)
    # Vision experts start as copies of the language experts.
    layer = model.layers[0]
    assert torch.equal(layer.attn.qkv.vision.weight, layer.attn.qkv.language.weight)
    with pytest.raises(UsageError, match="MiniLM's shape"):
        build_hybrid(MMEncConfig.from_size("tiny"))


def _same_type_figures(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Nearest-neighbour same-type rate vs chance, and the AUC of same- vs other-type pairs."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    n = len(x)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(n, dtype=bool)
    has_partner = (same & off).any(1)
    s = np.where(off, sim, -np.inf)
    nn = s.argmax(1)
    nn_rate = float((labels[nn] == labels)[has_partner].mean())
    chance = float(((same & off).sum(1) / (n - 1))[has_partner].mean())
    pos, neg = sim[same & off], sim[~same]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    return {"nn_same_type": nn_rate, "chance": chance, "pair_auc": auc}


@pytest.mark.slow
@pytest.mark.shared_data
def test_hm_sample_short_hybrid_pretraining(tmp_path: Path) -> None:
    hm = shared_data("hm-sample")
    paths, rows = hm_dataset(tmp_path / "data", hm)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "pretrain": dict(
                    image_size=128,
                    max_text_len=48,
                    max_steps=5,
                    batch_size=16,
                    lr=3e-4,
                    warmup_steps=2,
                    probe_items=32,
                    checkpoint_every=0,
                    seed=1,
                ),
                "extract": dict(effnet_image_size=160, batch_size=40),
            }
        )
    )
    metrics = pretrain(tmp_path / "data", "hm", load_section(params, "pretrain", PretrainConfig))
    before, after = metrics["probe_before"], metrics["probe_after"]
    print(
        f"hm-sample probe losses: MLM {before['mlm_loss']:.3f} -> {after['mlm_loss']:.3f}, "
        f"MIM {before['mim_loss']:.3f} -> {after['mim_loss']:.3f}; {metrics['train']}"
    )
    assert after["mlm_loss"] < before["mlm_loss"]
    assert after["mim_loss"] < before["mim_loss"]

    ex = extract(tmp_path / "data", "hm", load_section(params, "extract", ExtractConfig))
    print("hm-sample extraction:", ex)
    labels = rows["product_type_name"].to_numpy()
    has_image = ~read_features(paths.features / "effnet-image.parquet")[2]
    assert has_image.sum() == 100
    figures = {}
    for v in VARIANTS:
        _, x, missing = read_features(paths.features / f"{v}.parquet")
        keep = ~missing
        figures[v] = _same_type_figures(x[keep], labels[keep])
    for v, f in figures.items():
        print(
            f"hm-sample {v}: nearest neighbour same product type {f['nn_same_type']:.3f} "
            f"(chance {f['chance']:.3f}), same-vs-other-type pair AUC {f['pair_auc']:.3f}"
        )
    for v in ("alignrec", "mmenc-image", "mmenc-text"):
        assert figures[v]["pair_auc"] > 0.55, (v, figures[v])
        assert figures[v]["nn_same_type"] > 2 * figures[v]["chance"], (v, figures[v])


def test_teacher_maps_use_the_stored_batchnorm_statistics_and_leave_them_unchanged() -> None:
    # The masked-image targets are EfficientNet maps of the pixels alone: computed in eval mode
    # (no batch statistics, no drop-connect), whatever the global RNG, and the BatchNorm
    # statistics saved with the encoder stay the pretrained ones that extraction uses.
    from types import SimpleNamespace

    from alignrec_model.hybrid import load_efficientnet
    from alignrec_model.pretrain import compute_feature_maps

    model = build_hybrid(MMEncConfig.from_size("hybrid-minilm"))  # a new module: training mode
    stats = {k: v.clone() for k, v in model.image_stem.backbone.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 128, 128), generator=g, dtype=torch.uint8)
    data = SimpleNamespace(images=images, has_image=np.array([True, True, False, True, True]))
    torch.manual_seed(1)
    a = compute_feature_maps(model, data, batch_size=2)
    torch.manual_seed(2)
    b = compute_feature_maps(model, data, batch_size=2)
    assert torch.equal(a, b)  # no randomness
    c = compute_feature_maps(model, data, batch_size=5)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)  # no batch statistics
    assert torch.equal(a[2], torch.zeros_like(a[2]))
    after = model.image_stem.backbone.state_dict()
    assert all(torch.equal(stats[k], after[k]) for k in stats)
    reference = load_efficientnet(128)
    assert torch.equal(after["_bn0.running_mean"], reference.state_dict()["_bn0.running_mean"])
