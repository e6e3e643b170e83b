"""The mmenc kind under the shared rules: empty texts, missing images, metadata, merging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from alignrec_data.config import load_section
from alignrec_data.feature_info import feature_info
from alignrec_data.features import read_features
from alignrec_data.integrity import sha256_file
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.pretrain import PretrainConfig, pretrain
from tests.encoder._data import synthetic_dataset, tiny_params

MM = ["alignrec", "mmenc-image", "mmenc-text"]


def test_mmenc_outputs_with_empty_texts_and_missing_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths, _ = synthetic_dataset(data, n=10)  # items 4 and 9 have no image
    items = pq.read_table(paths.prepared / "items.parquet")
    texts = items.column("text").to_pylist()
    texts[2], texts[9] = "", "  "  # item 2: image, no text; item 9: neither
    items = items.set_column(items.schema.get_field_index("text"), "text", pa.array(texts))
    pq.write_table(items, paths.prepared / "items.parquet")
    params = tiny_params(tmp_path / "params.yaml", MM)
    pretrain(data, "synth", load_section(params, "pretrain", PretrainConfig))
    section = yaml.safe_load(params.read_text())
    # The three built-in names merge into one pass; an mmenc entry with another name reuses it.
    section["extract"]["variants"] = [*MM, {"name": "again", "kind": "mmenc", "outputs": ["joint"]}]
    params.write_text(yaml.safe_dump(section))
    metrics = extract(data, "synth", load_section(params, "extract", ExtractConfig))
    assert list(metrics["items_per_s"]) == ["alignrec", "again"]
    (_, joint, j_missing), (_, image, i_missing), (_, text, t_missing) = (
        read_features(paths.features / f"{v}.parquet") for v in MM
    )
    no_image, no_text = np.isin(np.arange(10), [4, 9]), np.isin(np.arange(10), [2, 9])
    assert list(i_missing) == list(no_image) and list(t_missing) == list(no_text)
    assert list(j_missing) == list(no_image | no_text)
    assert not text[no_text].any() and not image[no_image].any() and not joint[9].any()
    np.testing.assert_array_equal(joint[2], image[2])  # no text: the image-only output
    np.testing.assert_array_equal(joint[4], text[4])  # no image: the text-only output
    np.testing.assert_array_equal(read_features(paths.features / "again.parquet")[1], joint)
    info = feature_info(paths.features / "alignrec.parquet")
    assert info.without == {"image": "mmenc-text", "text": "mmenc-image"}
    assert info.model == {
        "path": "models/mmenc.pt",
        "sha256": sha256_file(paths.models / "mmenc.pt"),
    }
    assert (info.kind, info.pooling, info.dim) == ("mmenc", "cls", 32)


@pytest.mark.parametrize("kind", ["mmenc", "effnet"])
def test_a_home_relative_model_path_is_expanded(kind, tmp_path, monkeypatch) -> None:
    from alignrec_data.paths import DatasetPaths
    from alignrec_model.extractors.entry import VariantEntry
    from alignrec_model.extractors.source import entry_source

    monkeypatch.setenv("HOME", str(tmp_path))
    entry = VariantEntry(name="mine", kind=kind, model="~/weights.pt")
    source = entry_source(entry, DatasetPaths.of(tmp_path / "data", "toy"))
    assert source.path == tmp_path / "weights.pt"
    assert source.label == "~/weights.pt"
