"""Score saved predictions against ground truth: mIoU table, JSON, overlays of the worst frames.

    python validate.py --data-dir D --pred-dir preds --fold 0                 # fold_0_val.txt labels
    python validate.py --data-dir D --pred-dir preds --label-file my_list.txt  # S_0/label_3.npy lines
    python validate.py --data-dir D --pred-dir preds --gt-pkl D/test_sampleName_GT.pkl --json m.json
    python validate.py ... --overlays worst/ --worst 16                        # PNGs + worst/worst.png

Predictions are PRED/S_k/<n>.npy (np.save, uint8 (400, 640)); with a plain images/ + masks/ folder
as --data-dir, PRED/<name>.npy against its masks fitted into 640 x 400. A missing or malformed one fails
the whole run (exit 2) before anything is printed or written. A relative --label-file that does
not exist as given is looked up in --data-dir; --gt-pkl is read only from the path given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dataset.openeds import in_data_dir
from evaluation.report import (
    GroundTruth,
    format_report,
    ground_truth_from_fold,
    ground_truth_from_list,
    ground_truth_from_pickle,
    rank_frames,
    score_predictions,
    write_json,
)
from utils.cli import HelpFormatter
from utils.errors import InputError, cli_entry
from utils.folders import check_writable_dir
from viz.overlays import write_worst_overlays

DEFAULT_WORST = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="OpenEDS 2020 layout root, or a plain images/ + masks/ folder",
    )
    parser.add_argument(
        "--pred-dir", required=True, type=Path, metavar="DIR", help="predictions: S_k/<n>.npy (or <name>.npy)"
    )
    truth = parser.add_mutually_exclusive_group(required=True)
    truth.add_argument("--fold", type=int, metavar="K", help="score the labels of fold_<k>_val.txt")
    truth.add_argument(
        "--label-file",
        type=Path,
        metavar="FILE",
        help="score the labels listed (S_0/label_3.npy or masks/<name>.png lines)",
    )
    truth.add_argument(
        "--gt-pkl",
        type=Path,
        metavar="PKL",
        help="test ground-truth pickle (read with numpy arrays, dicts, strings, numbers only)",
    )
    parser.add_argument(
        "--folds-dir", type=Path, metavar="DIR", help="where fold_<k>_val.txt is (default: the data dir)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the metrics to this JSON file")
    parser.add_argument(
        "--overlays", type=Path, metavar="DIR", help="write overlays of the worst frames to this folder"
    )
    parser.add_argument(
        "--worst", type=int, metavar="N", help=f"how many worst frames to draw (default {DEFAULT_WORST})"
    )
    return parser.parse_args(argv)


def load_ground_truth(args: argparse.Namespace) -> GroundTruth:
    if args.fold is not None:
        return ground_truth_from_fold(args.data_dir, args.fold, args.folds_dir)
    if args.label_file is not None:
        return ground_truth_from_list(args.data_dir, in_data_dir(args.label_file, args.data_dir))
    return ground_truth_from_pickle(args.gt_pkl, args.data_dir)


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worst is not None and args.overlays is None:
        raise InputError("--worst needs --overlays DIR")
    worst = DEFAULT_WORST if args.worst is None else args.worst
    if worst < 1:
        raise InputError(f"--worst must be at least 1, got {worst}")

    if not args.data_dir.is_dir():
        raise InputError("data directory not found", args.data_dir)
    # Both outputs are checked before anything is scored or written: a bad --json path must not
    # fail after the overlays were written (or the reverse).
    for folder in (args.overlays, args.json.parent if args.json is not None else None):
        if folder is not None:
            check_writable_dir(folder)
    truth = load_ground_truth(args)
    meter = score_predictions(truth, args.pred_dir)
    metrics = meter.compute()
    written = []
    if args.overlays is not None:
        ranked = rank_frames(meter)[:worst]
        written = write_worst_overlays(args.overlays, ranked, args.data_dir, truth, args.pred_dir)
    if args.json is not None:
        write_json(args.json, metrics)

    header = f"validate: predictions {args.pred_dir} against {truth.source}"
    print(format_report(metrics, meter.names, header))
    if args.overlays is not None:
        print(f"\noverlays: {len(written) - 1} worst frames + contact sheet -> {written[-1]}")
    if args.json is not None:
        print(f"metrics -> {args.json}")
    return metrics


if __name__ == "__main__":
    main()
