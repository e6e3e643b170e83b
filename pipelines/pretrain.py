"""DVC stage ``pretrain``: prepared items + images -> models/mmenc.pt and pretrain metrics.

Reads only the ``pretrain`` section of the params file. The same entry as
``python -m alignrec_model.pretrain`` (:func:`alignrec_model.pretrain.entry.main`), so it also
runs under torchrun (every process runs it; rank 0 writes):

    python pipelines/pretrain.py --data-dir data --dataset amazon-mini --params params.yaml
    torchrun --nproc_per_node 4 -m alignrec_model.pretrain --data-dir data --dataset amazon-mini
"""

from __future__ import annotations

from alignrec_data.failures import run_stage
from alignrec_model.pretrain.entry import main

if __name__ == "__main__":
    raise SystemExit(run_stage(main))
