"""MMEnc: shapes and masks for image-only, text-only and joint input; padding invariance."""

from __future__ import annotations

import pytest
import torch

from alignrec_data.errors import UsageError
from alignrec_model.encoder import MMEnc, MMEncConfig
from alignrec_model.masking import block_mask, mask_text, sample_generator


@pytest.fixture(scope="module")
def tiny() -> MMEnc:
    torch.manual_seed(0)
    return MMEnc(MMEncConfig.from_size("tiny", vocab_size=100)).eval()


def _inputs(b: int = 3, t: int = 9):
    g = torch.Generator().manual_seed(1)
    img = torch.randn(b, 3, 32, 32, generator=g)
    ids = torch.randint(5, 100, (b, t), generator=g)
    pad = torch.zeros(b, t, dtype=torch.bool)
    pad[1, 5:] = True
    pad[2, 2:] = True
    return img, ids, pad


def test_shapes_for_the_three_input_kinds(tiny: MMEnc) -> None:
    img, ids, pad = _inputs()
    n = tiny.cfg.num_patches
    with torch.no_grad():
        image_only = tiny(pixel_values=img)
        text_only = tiny(input_ids=ids, text_padding_mask=pad)
        joint = tiny(pixel_values=img, input_ids=ids, text_padding_mask=pad)
    assert n == 16
    assert image_only.hidden.shape == (3, 1 + n, 32) and image_only.n_image == 1 + n
    assert text_only.hidden.shape == (3, 9, 32) and text_only.n_image == 0
    assert joint.hidden.shape == (3, 1 + n + 9, 32) and joint.n_image == 1 + n
    # The padding mask covers only the text part of the joint sequence.
    assert not joint.padding_mask[:, : 1 + n].any()
    assert torch.equal(joint.padding_mask[:, 1 + n :], pad)
    assert torch.isfinite(joint.hidden).all()
    # Joint CLS differs from image-only CLS: the image attends to the text.
    assert not torch.allclose(joint.cls, image_only.cls)


def test_padding_never_changes_the_cls_output(tiny: MMEnc) -> None:
    img, ids, pad = _inputs()
    extra = torch.zeros(3, 7, dtype=torch.long)
    ids_long = torch.cat([ids, extra], 1)
    pad_long = torch.cat([pad, torch.ones(3, 7, dtype=torch.bool)], 1)
    with torch.no_grad():
        for kw, kw_long in (
            (
                {"input_ids": ids, "text_padding_mask": pad},
                {"input_ids": ids_long, "text_padding_mask": pad_long},
            ),
            (
                {"pixel_values": img, "input_ids": ids, "text_padding_mask": pad},
                {"pixel_values": img, "input_ids": ids_long, "text_padding_mask": pad_long},
            ),
        ):
            a, b = tiny(**kw), tiny(**kw_long)
            torch.testing.assert_close(a.cls, b.cls, atol=1e-5, rtol=0)
            # Every non-padded token too.
            keep = ~a.padding_mask
            torch.testing.assert_close(
                a.hidden[keep], b.hidden[:, : a.hidden.shape[1]][keep], atol=1e-5, rtol=0
            )
        # Row 2 has 2 real tokens: alone it gives the same CLS as inside the padded batch.
        alone = tiny(pixel_values=img[2:], input_ids=ids[2:, :2])
        batch = tiny(pixel_values=img, input_ids=ids, text_padding_mask=pad)
        torch.testing.assert_close(alone.cls[0], batch.cls[2], atol=1e-5, rtol=0)


def test_image_mask_replaces_only_masked_patches(tiny: MMEnc) -> None:
    img, _, _ = _inputs()
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, [0, 1, 4, 5]] = True
    with torch.no_grad():
        tokens = tiny.embed_image(img, mask)
        clean = tiny.embed_image(img)
    assert torch.equal(tokens[:, 1:][mask], tiny.mask_token.expand(3, 16, -1)[mask])
    assert torch.equal(tokens[:, 1:][~mask], clean[:, 1:][~mask])


def test_vl_experts_serve_only_joint_input() -> None:
    torch.manual_seed(0)
    model = MMEnc(MMEncConfig.from_size("tiny", vocab_size=100, vl_layers=1)).eval()
    img, ids, pad = _inputs()
    with torch.no_grad():
        before = [
            model(pixel_values=img).cls,
            model(input_ids=ids, text_padding_mask=pad).cls,
            model(pixel_values=img, input_ids=ids, text_padding_mask=pad).cls,
        ]
        for p in model.layers[-1].ffn.vl.parameters():
            p.add_(1.0)
        after = [
            model(pixel_values=img).cls,
            model(input_ids=ids, text_padding_mask=pad).cls,
            model(pixel_values=img, input_ids=ids, text_padding_mask=pad).cls,
        ]
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])
    assert model.layers[0].ffn.vl is None


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(UsageError, match="unknown encoder size 'huge'"):
        MMEncConfig.from_size("huge")
    with pytest.raises(UsageError, match="not divisible by heads"):
        MMEncConfig.from_size("tiny", heads=5)
    with pytest.raises(UsageError, match="unknown encoder setting"):
        MMEncConfig.from_size("tiny", hiddn=3)
    base = MMEncConfig.from_size("base")
    assert (base.hidden, base.layers, base.heads, base.ffn, base.vocab_size, base.num_patches) == (
        768,
        12,
        12,
        3072,
        64010,
        196,
    )


def test_block_mask_counts_blocks_and_determinism() -> None:
    for grid, n in ((4, 6), (14, 78), (7, 20)):
        m1 = block_mask(grid, n, sample_generator(0, 1, 42, 2))
        m2 = block_mask(grid, n, sample_generator(0, 1, 42, 2))
        assert m1.shape == (grid * grid,) and int(m1.sum()) == n
        assert torch.equal(m1, m2)
    # Block-wise: on a 14x14 grid masked patches mostly have a masked 4-neighbour.
    m = block_mask(14, 78, sample_generator(0, 0, 7, 2)).view(14, 14)
    padded = torch.nn.functional.pad(m.float(), (1, 1, 1, 1))
    neigh = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    assert float((neigh[m] > 0).float().mean()) > 0.9
    assert not torch.equal(m.view(-1), block_mask(14, 78, sample_generator(0, 0, 8, 2)))


def test_text_mask_ratio_and_specials() -> None:
    ids = torch.arange(100, 140)
    valid = torch.ones(40, dtype=torch.bool)
    valid[0] = valid[-1] = False  # [CLS] and [SEP]
    masked, labels = mask_text(
        ids, valid, 0.5, mask_id=3, vocab_size=1000, g=sample_generator(0, 0, 1, 1)
    )
    sel = labels >= 0
    assert int(sel.sum()) == 19  # round(0.5 * 38)
    assert not sel[0] and not sel[-1]
    assert torch.equal(labels[sel], ids[sel]) and torch.equal(masked[~sel], ids[~sel])
    assert int((masked[sel] == 3).sum()) >= 10  # about 80% become [MASK]
