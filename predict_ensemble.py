"""Predict frames with a weighted ensemble + TTA: .npy masks, output.txt, submission, pseudo-labels.

    python predict_ensemble.py --data-dir D --label-file D/test.txt --save-dir preds \\
        --ensemble configs/ensemble.yaml --submission preds/submission.json
    python predict_ensemble.py --data-dir D --label-file D/unlabeled.txt --pseudo-dir pseudo \\
        --checkpoints runs/a/fold_0/best.pt runs/a/fold_1/best.pt --threshold 0.9 --min-confident 0.95
    # a teacher for train.py --teacher: the ensemble's class probabilities of the unlabeled frames
    python predict_ensemble.py --data-dir D --label-file D/unlabeled.txt --probs-dir teacher \\
        --checkpoints runs/a/fold_0/best.pt runs/a/fold_1/best.pt
    # n GPUs: one process per shard; the last one to finish writes output.txt / pseudo.json
    python predict_ensemble.py ... --shard 0/2 --gpu 0 &  python predict_ensemble.py ... --shard 1/2 --gpu 1

The original recipe's command works as written:

    python predict_ensemble.py --data-dir D --label-file test.txt --save-dir preds --gpu 0

--label-file is required: it names the frames (S_0/label_3.npy lines, like the challenge's test
list or dataset.create_kfolds' unlabeled.txt), so a run never predicts 29k frames by accident; a
relative path that does not exist as given is looked up in --data-dir, as the recipe did. The
models: --ensemble FILE or --checkpoints A.pt B.pt; with neither, configs/ensemble.yaml (the
recipe listed its models inside its predict_ensemble.py; here that list is this file).
A rerun continues where a killed one stopped; a folder made by another ensemble is refused
unless --overwrite. A plain images/ + masks/ folder (dataset/folder.py) works as a data dir too:
its lists name masks/<name>.png, and its predictions are <save-dir>/<name>.npy in the models'
640 x 400 frame, which validate.py scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from config.ensemble import DEFAULT_TTA, TTA_NAMES
from dataset.openeds import in_data_dir, read_sample_list
from inference.engine import DEFAULT_MIN_AREA, min_area_per_class
from inference.members import ensemble_members
from inference.predict import (
    PredictJob,
    auto_min_area,
    parse_shard,
    run_prediction,
)
from inference.predictor import Predictor
from inference.pseudo import PseudoSettings
from runtime.device import PRECISIONS, prediction_workers
from utils.cli import HelpFormatter
from utils.errors import InputError, cli_entry

# The models predicted when neither --ensemble nor --checkpoints is given (the recipe's list).
DEFAULT_ENSEMBLE = Path(__file__).resolve().parent / "configs" / "ensemble.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="OpenEDS 2020 layout root, or a plain images/ + masks/ folder",
    )
    parser.add_argument(
        "--label-file",
        required=True,
        type=Path,
        help="frames to predict (S_0/label_3.npy or masks/<name>.png lines); a relative path not found as given "
        "is read from --data-dir",
    )
    parser.add_argument(
        "--save-dir",
        "--out",
        dest="save_dir",
        type=Path,
        help="predictions: S_k/<n>.npy (or <name>.npy) and output.txt",
    )
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "--ensemble",
        type=Path,
        help="ensemble YAML: members (checkpoint globs, weights), tta (default without --checkpoints: "
        "configs/ensemble.yaml, the list the recipe kept inside its script)",
    )
    models.add_argument("--checkpoints", nargs="+", help="checkpoints, weight 1 each (configs embedded)")
    parser.add_argument(
        "--tta", choices=TTA_NAMES, help=f"overrides the ensemble file's (default {DEFAULT_TTA})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per batch (default: 8 on CUDA, 1 on the CPU, the faster there)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers decoding PNGs (default: 2 on CUDA; on a CPU 0 with <= 2 cores, else 2)",
    )
    parser.add_argument(
        "--gpu",
        help="CUDA device(s) by torch's numbering: 0, or 0,1 (local rank r takes the r-th); 'cpu' forces the CPU (default: cuda:0 if present)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", *PRECISIONS],
        default="auto",
        help="auto: fp16 autocast on CUDA; on a CPU bf16 only where native (AMX), else fp32",
    )
    parser.add_argument("--shard", default="0/1", help="i/n: this process predicts frames i, i+n, i+2n, ...")
    parser.add_argument(
        "--submission", type=Path, help="also write the challenge JSON here (needs --save-dir)"
    )
    parser.add_argument(
        "--pseudo-dir", type=Path, help="write confidence-filtered pseudo-labels + pseudo.json here"
    )
    parser.add_argument(
        "--probs-dir",
        type=Path,
        help="write the ensemble's class probabilities (uint8, S_k/<n>.npz) + teacher.json here: "
        "a teacher for train.py --teacher",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.9, help="pseudo: min softmax confidence of a kept pixel"
    )
    parser.add_argument(
        "--min-confident",
        type=float,
        default=0.95,
        help="pseudo: min share of confident pixels of a kept frame",
    )
    parser.add_argument(
        "--min-area",
        default=str(DEFAULT_MIN_AREA),
        help="drop a class from a frame where it covers fewer pixels than this: N (all classes but "
        "background), 'auto' (half its smallest area in the members' training labels) or 0 (off; "
        f"default {DEFAULT_MIN_AREA}, as segment.py's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of another ensemble")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.save_dir is None and args.pseudo_dir is None and args.probs_dir is None:
        raise InputError(
            "give --save-dir (predictions), --pseudo-dir (pseudo-labels) and/or --probs-dir (a teacher)"
        )
    if (args.batch_size is not None and args.batch_size < 1) or (
        args.workers is not None and args.workers < 0
    ):
        raise InputError("--batch-size must be >= 1 and --workers >= 0")
    if not (0 < args.threshold <= 1 and 0 <= args.min_confident <= 1):
        raise InputError("--threshold must be in (0, 1] and --min-confident in [0, 1]")
    if args.min_area != "auto" and not (args.min_area.isdigit()):
        raise InputError(f"--min-area must be a whole number of pixels or 'auto', got {args.min_area!r}")
    shard = parse_shard(args.shard)
    keys = read_sample_list(in_data_dir(args.label_file, args.data_dir))
    spec, members = ensemble_members(args.checkpoints, args.ensemble, DEFAULT_ENSEMBLE)
    if args.min_area == "auto":
        min_area = auto_min_area(args.data_dir, members)
    else:
        min_area = min_area_per_class(int(args.min_area), members[0].config.num_classes)
    if any(min_area):
        print(f"min area per class (pixels): {list(min_area)}")
    predictor = Predictor.build(
        members, tta=args.tta, spec_tta=spec.tta, gpu=args.gpu, precision=args.precision,
        batch_size=args.batch_size, min_area=min_area, doing="predicting",
    )  # fmt: skip
    print(predictor.runtime)
    job = PredictJob(
        data_dir=args.data_dir,
        keys=keys,
        save_dir=args.save_dir,
        pseudo=PseudoSettings(args.pseudo_dir, args.threshold, args.min_confident)
        if args.pseudo_dir
        else None,
        submission=args.submission,
        shard=shard,
        workers=prediction_workers(predictor.device) if args.workers is None else args.workers,
        overwrite=args.overwrite,
        probs_dir=args.probs_dir,
    )
    result = run_prediction(job, predictor)
    if args.save_dir is not None:
        if result.output_list is not None:
            extra = f", submission {result.submission}" if result.submission else ""
            print(f"predictions of {len(keys)} frames in {args.save_dir}: {result.output_list}{extra}")
        else:
            print(f"shard {args.shard} done; output.txt is written by the shard that completes the list")
    if args.pseudo_dir is not None:
        if result.manifest is not None:
            s = result.manifest["summary"]
            print(
                f"pseudo-labels: kept {s['kept']}/{s['frames']} frames (skipped {s['skipped']} below "
                f"{args.min_confident:.0%} confident pixels); mean confident share {s['mean_confident_share']:.3f}, "
                f"ignored pixels in kept {s['ignored_pixel_share']:.3f} -> {args.pseudo_dir}"
            )
        else:
            print(f"shard {args.shard} done; pseudo.json is written by the shard that completes the list")
    if args.probs_dir is not None:
        if result.teacher is not None:
            print(f"teacher probabilities of {len(keys)} frames (uint8) -> {args.probs_dir}")
        else:
            print(f"shard {args.shard} done; teacher.json is written by the shard that completes the list")


if __name__ == "__main__":
    main()
