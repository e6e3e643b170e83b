"""Joint fine-tuning of the encoder's top layers inside AlignRec (finetune_encoder_layers > 0).

A tiny MMEnc is pretrained from scratch on a synthetic 16-item dataset (real image shards and
items table), its features extracted, and AlignRec trained through `train_dataset` with the top
encoder layer(s) fine-tuned: the top reproduces the extracted features before training, only the
top layers move, and bad settings are refused with errors that name the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from alignrec_data.config import load_section
from alignrec_data.errors import UsageError
from alignrec_data.paths import DatasetPaths
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.finetune import encoder_top_for_dataset
from alignrec_model.pretrain import (
    CHECKPOINT_FILE,
    PretrainConfig,
    encoder_from_checkpoint,
    load_checkpoint,
    pretrain,
)
from alignrec_model.train import (
    TrainConfig,
    encoder_top,
    load_feature_matrix,
    make_optimizer,
    train_dataset,
)
from tests.encoder._data import synthetic_dataset, tiny_params
from tests.model_train._helpers import write_prepared

N_ITEMS = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finetune")
    synthetic_dataset(root / "data", n=N_ITEMS)  # items 4, 9, 14 have no image
    params = tiny_params(root / "params.yaml", ["alignrec", "mmenc-text"])
    pretrain(root / "data", "synth", load_section(params, "pretrain", PretrainConfig))
    extract(root / "data", "synth", load_section(params, "extract", ExtractConfig))
    # 24 users, each with 4 train items of one category (item % 4), 1 valid and 1 test item.
    rng = np.random.default_rng(0)
    users, items, splits = [], [], []
    for u in range(24):
        own = rng.permutation(np.arange(u % 4, N_ITEMS, 4))
        for k, i in enumerate(own):
            users.append(u)
            items.append(int(i))
            splits.append("train" if k < 2 else ("valid" if k == 2 else "test"))
        users += [u, u]
        items += [int((u % 4 + 1) % 4), int((u % 4 + 5) % N_ITEMS)]
        splits += ["train", "train"]
    write_prepared(root / "data", "synth", users, items, splits)
    return root / "data"


def _config(n_layers: int = 1, **train) -> TrainConfig:
    base = TrainConfig(
        epochs=2,
        batch_size=32,
        lr=0.01,
        device="cpu",
        num_threads=1,
        topks=(5, 10),
        valid_metric="recall@10",
        **train,
    )
    return dataclasses.replace(
        base,
        alignrec=dataclasses.replace(
            base.alignrec,
            embedding_dim=8,
            knn_k=3,
            finetune_encoder_layers=n_layers,
            encoder_lr=1e-3,
        ),
    )


@pytest.mark.parametrize("variant", ["alignrec", "mmenc-text"])
def test_top_layers_reproduce_the_extracted_features(dataset: Path, variant: str) -> None:
    paths = DatasetPaths.of(dataset, "synth")
    reference = load_feature_matrix(paths, variant)
    top = encoder_top_for_dataset(paths, variant, 1, reference, check_items=N_ITEMS)
    top.eval()
    with torch.no_grad():
        ids = torch.tensor([14, 0, 4, 3, 3])  # mixed: with and without an image, a repeat
        got = top(ids).numpy()
    np.testing.assert_allclose(got, reference[ids.numpy()], atol=1e-5)
    if variant == "alignrec":
        assert top.text_states.shape[0] == 3 and top.joint_states.shape[0] == 13
        assert top.n_image > 0
    else:
        assert top.text_states.shape[0] == N_ITEMS and top.joint_states.shape[0] == 0
    # Only the top layer (of 2) is held and trained.
    assert len(top.layers) == 1 and all(p.requires_grad for p in top.parameters())


def test_training_moves_only_the_top_layers_at_their_own_lr(dataset: Path) -> None:
    paths = DatasetPaths.of(dataset, "synth")
    stage1 = encoder_from_checkpoint(load_checkpoint(paths.models / CHECKPOINT_FILE))
    config = _config(1)
    result = train_dataset(dataset, "synth", config, "alignrec", "alignrec")
    state = result.best_state
    top_keys = sorted(k for k in state if k.startswith("feature_fn."))
    assert top_keys, "the checkpoint holds the fine-tuned layer"
    # feature_fn.layers.0 is the encoder's layer 1 (the top of 2).
    before = stage1.state_dict()
    # feature_fn.layers.0.* is the encoder's layers.1.*; feature_fn.final_norm.* its final_norm.
    moved = [
        k
        for k in top_keys
        if not torch.equal(
            state[k],
            before[k.replace("feature_fn.layers.0.", "layers.1.").removeprefix("feature_fn.")],
        )
    ]
    assert moved, "fine-tuning changed the top layer's weights"
    assert not any(".layers.1." in k for k in top_keys)  # the lower layer is not held
    assert any(k.startswith("feature_fn.layers.0.attn") for k in moved)
    for split in ("valid", "test"):
        assert all(np.isfinite(v) for v in getattr(result, split).values())
    assert (paths.models / "alignrec-alignrec.pt").is_file()
    # Two parameter groups: the recommender at train.lr, the encoder at encoder_lr.
    from alignrec_model.data import load_interactions
    from alignrec_model.train import build_model

    data = load_interactions(paths.prepared)
    matrix = load_feature_matrix(paths, "alignrec")
    net = build_model(
        "alignrec",
        data,
        config,
        matrix,
        feature_fn=encoder_top(paths, config, "alignrec", "alignrec", matrix),
    )
    optimizer, _ = make_optimizer(net, config)
    assert [(g["name"], g["lr"]) for g in optimizer.param_groups] == [
        ("recommender", 0.01),
        ("encoder", 1e-3),
    ]


def test_bad_fine_tuning_settings_are_refused(dataset: Path) -> None:
    paths = DatasetPaths.of(dataset, "synth")
    from tests.model_train._helpers import write_variant

    write_variant(dataset, "synth", "minilm-text", np.ones((N_ITEMS, 4), dtype=np.float32))
    with pytest.raises(UsageError, match="not 'minilm-text'"):
        train_dataset(dataset, "synth", _config(1), "alignrec", "minilm-text")
    with pytest.raises(UsageError, match="finetune_encoder_layers = 3.*2 layers"):
        encoder_top_for_dataset(paths, "alignrec", 3)
    # Features that the checkpoint does not produce (extracted by another encoder).
    other = load_feature_matrix(paths, "alignrec") + 1.0
    with pytest.raises(UsageError, match="does not reproduce"):
        encoder_top_for_dataset(paths, "alignrec", 1, other)


def test_cuda_without_a_gpu_is_a_usage_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: train.device cuda is valid here")
    from alignrec_model.runtime import resolve_device, torch_threads

    with pytest.raises(UsageError, match="train.device is cuda"):
        resolve_device("cuda", "train")
    with pytest.raises(UsageError, match="extract.device = 'tpu'"):
        resolve_device("tpu", "extract")
    assert resolve_device("auto", "train").type == "cpu"
    with pytest.raises(UsageError, match="train.device"):
        TrainConfig(device="tpu")
    # The thread setting holds inside the block only.
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("variant", ["alignrec", "mmenc-text"])
def test_bf16_cached_states_are_checked_at_bf16_precision(dataset: Path, variant: str) -> None:
    """The CUDA cache is bfloat16: the reproduction check takes its precision from the states
    that exist (a text-only variant has only text states), not from the empty joint buffer."""
    paths = DatasetPaths.of(dataset, "synth")
    reference = load_feature_matrix(paths, variant)
    top = encoder_top_for_dataset(
        paths, variant, 1, reference, check_items=N_ITEMS, cache_dtype=torch.bfloat16
    )
    assert top.text_states.dtype == torch.bfloat16
    with torch.no_grad():
        got = top.eval()(torch.arange(N_ITEMS)).float().numpy()
    err = np.abs(got - reference).max() / max(1.0, np.abs(reference).max())
    assert 1e-3 < err < 5e-2  # bf16 rounding: above the float32 tolerance, within bf16's
