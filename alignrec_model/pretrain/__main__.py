"""``python -m alignrec_model.pretrain`` and ``torchrun ... -m alignrec_model.pretrain``."""

from alignrec_data.failures import run_stage
from alignrec_model.pretrain.entry import main

if __name__ == "__main__":
    raise SystemExit(run_stage(main))
