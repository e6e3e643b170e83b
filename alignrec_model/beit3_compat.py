"""Official BEiT-3 checkpoints (microsoft/torchscale ``BEiT3`` layout) <-> :class:`MMEnc`.

The released checkpoints (``beit3_base_patch16_224.pth`` and friends, from microsoft/unilm
``beit3``) hold a ``model`` dict whose encoder keys start with ``beit3.``:
``beit3.text_embed.weight``, ``beit3.vision_embed.{proj,cls_token,mask_token}``,
``beit3.encoder.embed_positions.{A,B}.weight`` and per layer
``beit3.encoder.layers.<i>.self_attn.{q,k,v,out}_proj.{A,B}``, ``...self_attn.inner_attn_ln``,
``...self_attn_layer_norm``, ``...ffn.{A,B}.{fc1,fc2,ffn_layernorm}``, ``...final_layer_norm``
and ``beit3.encoder.layer_norm``. ``A`` is the vision expert and ``B`` the language expert.
Our layout is the same model with q/k/v fused into one ``qkv`` projection per expert, so the
mapping is a renaming plus a concatenation; it is exact (tests/encoder/test_beit3_compat.py
builds torchscale's ``BEiT3`` and compares outputs).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_model.encoder import MMEnc, MMEncConfig

logger = logging.getLogger(__name__)

_EXPERT = {"A": "vision", "B": "language"}
_PREFIXES = ("text_embed.", "vision_embed.", "encoder.")

# torchscale name (after "encoder.layers.<i>.") -> ours (after "layers.<i>.") for plain renames.
_LAYER_RENAMES = {
    "self_attn_layer_norm": "attn_norm",
    "self_attn.inner_attn_ln": "attn.inner_attn_ln",
    "self_attn.out_proj": "attn.out_proj",
    "ffn": "ffn",
    "final_layer_norm": "ffn_norm",
}
_TOP_RENAMES = {
    "text_embed.weight": "text_embed.weight",
    "vision_embed.proj.weight": "image_stem.proj.weight",
    "vision_embed.proj.bias": "image_stem.proj.bias",
    "vision_embed.cls_token": "cls_token",
    "vision_embed.mask_token": "mask_token",
}
_LAYER_KEY = re.compile(r"^encoder\.layers\.(\d+)\.(.+)\.([AB])\.(.+)$")
_OURS_MULTIWAY = {
    "embed_positions": "pos_embed",
    "layer_norm": "final_norm",
    "layernorm_embedding": "embed_norm",
}
_MULTIWAY_KEY = re.compile(rf"^encoder\.({'|'.join(_OURS_MULTIWAY)})\.([AB])\.(.+)$")


def torchscale_to_mmenc(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchscale ``BEiT3`` encoder state dict (no ``beit3.`` prefix) to ours.

    Args:
        state: Keys as in ``torchscale.model.BEiT3.BEiT3().state_dict()``.

    Returns:
        The same tensors under :class:`MMEnc` names (q/k/v concatenated into ``qkv``).

    Raises:
        DataFormatError: A key has no counterpart, or q/k/v of a projection are incomplete.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = value
            continue
        if m := _MULTIWAY_KEY.match(key):
            out[f"{_OURS_MULTIWAY[m[1]]}.{_EXPERT[m[2]]}.{m[3]}"] = value
            continue
        if m := _LAYER_KEY.match(key):
            i, module, expert, param = m[1], m[2], _EXPERT[m[3]], m[4]
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((i, expert, param), {})[module[-6]] = value
                continue
            if module in _LAYER_RENAMES:
                out[f"layers.{i}.{_LAYER_RENAMES[module]}.{expert}.{param}"] = value
                continue
        msg = f"BEiT-3 checkpoint key {key!r} has no counterpart in MMEnc"
        raise DataFormatError(msg)
    for (i, expert, param), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            msg = (
                f"BEiT-3 checkpoint layer {i} {expert} {param}: q/k/v incomplete ({sorted(parts)})"
            )
            raise DataFormatError(msg)
        out[f"layers.{i}.attn.qkv.{expert}.{param}"] = torch.cat([parts[n] for n in "qkv"])
    return out


def mmenc_to_torchscale(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`torchscale_to_mmenc` (for exporting to torchscale ``BEiT3``).

    Only the torchscale layout is exported: patch stem, no VL experts.
    """
    top = {v: k for k, v in _TOP_RENAMES.items()}
    multi = {v: k for k, v in _OURS_MULTIWAY.items()}
    layer = {v: k for k, v in _LAYER_RENAMES.items()}
    expert = {v: k for k, v in _EXPERT.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        parts = key.split(".")
        if parts[0] in multi:
            out[f"encoder.{multi[parts[0]]}.{expert[parts[1]]}.{'.'.join(parts[2:])}"] = value
            continue
        m = re.match(r"^layers\.(\d+)\.(.+)\.(vision|language|vl)\.(.+)$", key)
        if m is None or m[3] == "vl":
            msg = f"MMEnc key {key!r} has no torchscale BEiT3 counterpart"
            raise DataFormatError(msg)
        i, module, ex, param = m[1], m[2], expert[m[3]], m[4]
        if module == "attn.qkv":
            for name, chunk in zip("qkv", value.chunk(3), strict=True):
                out[f"encoder.layers.{i}.self_attn.{name}_proj.{ex}.{param}"] = chunk
        else:
            out[f"encoder.layers.{i}.{layer[module]}.{ex}.{param}"] = value
    return out


def encoder_state_from_checkpoint(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The torchscale encoder tensors of a loaded official checkpoint (prefix removed).

    Accepts ``{"model": {...}}``, ``{"module": {...}}`` or a bare state dict, with or without
    the ``beit3.`` prefix; task heads (``head``, ``mlm_head``...) are dropped and logged.
    """
    if isinstance(obj, dict):
        for wrapper in ("model", "module", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        msg = f"{source} is not a BEiT-3 state dict (expected a mapping of names to tensors)"
        raise DataFormatError(msg)
    state, dropped = {}, []
    for key, value in obj.items():
        name = key.removeprefix("beit3.")
        if name.startswith(_PREFIXES):
            state[name] = value
        else:
            dropped.append(key)
    if not state:
        msg = f"{source} holds no BEiT-3 encoder keys (text_embed., vision_embed., encoder.)"
        raise DataFormatError(msg)
    if dropped:
        logger.info(
            "ignoring %d non-encoder keys of %s (e.g. %s)", len(dropped), source, dropped[0]
        )
    return state


def load_beit3_state(model: MMEnc, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a torchscale-layout encoder state into ``model``, checking every shape.

    VL experts (``vl_layers`` > 0), absent from official checkpoints, start as copies of the
    language experts (the VLMo / BEiT-3 initialisation).

    Raises:
        UsageError: The first key whose shape does not fit (with both shapes), or keys missing.
    """
    mapped = torchscale_to_mmenc(state)
    own = model.state_dict()
    for key, value in mapped.items():  # in checkpoint order: the first misfit is named
        if key not in own:
            msg = f"{source}: key {key!r} does not exist in MMEnc({model.cfg.size})"
            raise UsageError(msg, hint="set the encoder size/image_stem to the checkpoint's")
        if tuple(own[key].shape) != tuple(value.shape):
            msg = (
                f"{source}: the first key that does not fit is {key!r}: checkpoint shape "
                f"{tuple(value.shape)}, MMEnc({model.cfg.size}) expects {tuple(own[key].shape)}"
            )
            raise UsageError(
                msg, hint="official BEiT-3 base needs size=base (vocab 64010, image 224, patch 16)"
            )
    for key in [k for k in own if ".vl." in k]:
        mapped[key] = mapped.get(key.replace(".vl.", ".language."), own[key])
    missing = sorted(set(own) - set(mapped))
    if missing:
        msg = f"{source} lacks {len(missing)} MMEnc key(s), first {missing[0]!r}"
        raise UsageError(msg, hint="the checkpoint is not a full BEiT-3 encoder")
    model.load_state_dict(mapped, strict=True)


def load_beit3_checkpoint(path: str | Path, cfg: MMEncConfig) -> MMEnc:
    """Build :class:`MMEnc` with ``cfg`` and load an official BEiT-3 checkpoint file into it.

    Args:
        path: A ``.pth`` file from microsoft/unilm beit3 (loaded with ``weights_only=True``).
        cfg: The encoder config; must match the checkpoint (e.g. ``from_size("base")``).

    Returns:
        The loaded model.

    Raises:
        UsageError: File missing, or shapes / keys do not fit (the first misfit is named).
        DataFormatError: Not a loadable state dict.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"BEiT-3 checkpoint {path} does not exist"
        raise UsageError(msg, hint="download beit3_base_patch16_224.pth from microsoft/unilm")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors of many kinds
        msg = f"cannot load {path} as a weights-only torch checkpoint: {err}"
        raise DataFormatError(msg) from err
    model = MMEnc(cfg)
    load_beit3_state(model, encoder_state_from_checkpoint(obj, str(path)), str(path))
    return model
