"""Official BEiT-3 layout: torchscale's own ``BEiT3`` and MMEnc give the same outputs.

torchscale 0.3.0 and fairscale are installed with ``--no-deps`` (Makefile). torchscale
imports ``timm.models.layers.drop_path``; timm cannot be installed here (it pulls torchvision,
which breaks transformers), so this test installs a small stub module for exactly that import
(tests/encoder/_timm_stub.py) before importing torchscale. Everything else is the real
torchscale code.
"""

from __future__ import annotations

import pytest
import torch

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_model.beit3_compat import (
    load_beit3_checkpoint,
    mmenc_to_torchscale,
    torchscale_to_mmenc,
)
from alignrec_model.encoder import MMEncConfig
from tests.encoder._timm_stub import install as install_timm_stub

install_timm_stub()
torchscale_beit3 = pytest.importorskip(
    "torchscale.model.BEiT3", reason="pip install --no-deps torchscale==0.3.0 fairscale"
)
EncoderConfig = pytest.importorskip("torchscale.architecture.config").EncoderConfig

VOCAB = 100


def _torchscale_tiny(**over) -> torch.nn.Module:
    # The official BEiT-3 settings (microsoft/unilm beit3 _get_base_config) at a tiny size.
    args = EncoderConfig(
        img_size=32,
        patch_size=8,
        vocab_size=VOCAB,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=True,
        no_output_layer=True,
        drop_path_rate=0.0,
        encoder_embed_dim=32,
        encoder_attention_heads=2,
        encoder_ffn_embed_dim=64,
        encoder_layers=2,
        max_source_positions=66,
        **over,
    )
    torch.manual_seed(0)
    model = torchscale_beit3.BEiT3(args).eval()
    with torch.no_grad():  # move LayerNorms etc. away from their identity init
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory):
    ts = _torchscale_tiny()
    # The released files: {"model": {"beit3.<key>": tensor, ..., task heads}}.
    state = {f"beit3.{k}": v for k, v in ts.state_dict().items()}
    state["head.weight"] = torch.zeros(3, 32)
    path = tmp_path_factory.mktemp("beit3") / "beit3_tiny.pth"
    torch.save({"model": state}, path)
    return ts, path


def test_loaded_official_checkpoint_matches_torchscale_outputs(official_file) -> None:
    ts, path = official_file
    ours = load_beit3_checkpoint(path, MMEncConfig.from_size("tiny", vocab_size=VOCAB)).eval()
    g = torch.Generator().manual_seed(3)
    img = torch.randn(3, 3, 32, 32, generator=g)
    ids = torch.randint(0, VOCAB, (3, 12), generator=g)
    pad = torch.zeros(3, 12, dtype=torch.bool)
    pad[1, 7:] = True
    pad[2, 3:] = True
    vmask = torch.rand(3, 16, generator=g) < 0.4
    diffs = {}
    with torch.no_grad():
        ref = ts(visual_tokens=img, vision_masked_position=vmask)["encoder_out"]
        diffs["image"] = (ref - ours(pixel_values=img, image_mask=vmask).hidden).abs().max()
        ref = ts(textual_tokens=ids, text_padding_position=pad)["encoder_out"]
        diffs["text"] = (ref - ours(input_ids=ids, text_padding_mask=pad).hidden).abs().max()
        ref = ts(textual_tokens=ids, visual_tokens=img, text_padding_position=pad)["encoder_out"]
        out = ours(pixel_values=img, input_ids=ids, text_padding_mask=pad).hidden
        diffs["joint"] = (ref - out).abs().max()
    print("torchscale max abs diff:", {k: float(v) for k, v in diffs.items()})
    assert all(float(v) < 1e-5 for v in diffs.values()), diffs
    assert float(ref.abs().max()) > 0.1  # not a trivially small output


def test_mapping_round_trips_every_key() -> None:
    state = _torchscale_tiny().state_dict()
    back = mmenc_to_torchscale(torchscale_to_mmenc(state))
    assert set(back) == set(state)
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_wrong_shaped_checkpoint_names_the_first_key_that_does_not_fit(
    official_file, tmp_path
) -> None:
    _, path = official_file
    with pytest.raises(
        UsageError,
        match=r"first key that does not fit is 'text_embed.weight'.*\(100, 32\).*\(30522, 32\)",
    ):
        load_beit3_checkpoint(path, MMEncConfig.from_size("tiny"))  # vocab 30522 != 100
    with pytest.raises(UsageError, match="does not exist"):
        load_beit3_checkpoint(tmp_path / "absent.pth", MMEncConfig.from_size("tiny"))


def test_checkpoint_with_code_is_refused(tmp_path) -> None:
    # weights_only=True: a pickle that would run code on load is rejected, not executed.
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": print}, path)
    with pytest.raises(DataFormatError, match="weights-only"):
        load_beit3_checkpoint(path, MMEncConfig.from_size("tiny"))
