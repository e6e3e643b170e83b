import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from alignrec_data.features import write_features
from alignrec_model.report import build_report, pca_2d


def _dataset(root):
    (root / "metrics").mkdir(parents=True)
    (root / "prepared").mkdir()
    m = root / "metrics"
    (m / "train-lightgcn.json").write_text(
        json.dumps(
            {
                "best_epoch": 3,
                "valid": {"recall@20": 0.4},
                "test": {"recall@20": 0.45, "recall@10": 0.3, "ndcg@10": 0.2, "ndcg@20": 0.25},
            }
        )
    )
    (m / "history-lightgcn.json").write_text(
        json.dumps([{"epoch": e, "valid_recall@20": 0.1 * e} for e in range(4)])
    )
    (m / "eval-mask-modality-alignrec.json").write_text(
        json.dumps(
            {
                "protocol": "mask-modality",
                "features": "alignrec",
                "test": {"recall@20": 0.5, "ndcg@20": 0.3},
                "drop": {"test": {"recall@20": 0.0123}},
            }
        )
    )
    (m / "pretrain_history.csv").write_text("step,mlm_loss,mim_loss\n1,10.0,1.2\n2,9.0,1.1\n")
    cats = [["Baby", "Toys"], ["Baby", "Bath"], ["Baby", "Toys"], []]
    pq.write_table(
        pa.table({"item_id": [0, 1, 2, 3], "categories": cats}), root / "prepared" / "items.parquet"
    )
    rng = np.random.default_rng(0)
    write_features(root / "features" / "alignrec.parquet", list("abcd"), rng.normal(size=(4, 8)))


def test_report_tables_and_figures(tmp_path):
    root = tmp_path / "ds"
    _dataset(root)
    report = build_report(root, tmp_path / "out")
    text = report.read_text()
    assert "| lightgcn | 3 | 0.4000 | 0.3000 | 0.4500 | 0.2000 | 0.2500 |" in text
    assert "| mask-modality | alignrec | 0.5000 | 0.3000 | 0.0123 |" in text
    for png in ("recall_at_k", "valid_curves", "pretrain_losses", "features_alignrec"):
        assert f"figures/{png}.png" in text
        with Image.open(tmp_path / "out" / "figures" / f"{png}.png") as im:
            assert im.width > 100 and im.height > 100


def test_pca_is_deterministic_and_two_dimensional():
    x = np.random.default_rng(1).normal(size=(20, 5))
    a, b = pca_2d(x), pca_2d(x[:, :])
    assert a.shape == (20, 2)
    np.testing.assert_array_equal(a, b)
    # The first component carries at least as much variance as the second.
    assert a[:, 0].var() >= a[:, 1].var()
