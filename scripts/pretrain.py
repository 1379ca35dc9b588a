"""`make pretrain`: the default model, trained on the CPU from freshly rendered eyes.

Stages, each the command a user would type (printed before it runs):
1. a small validation set on disk: rendered sequences of the real-camera styles
   (dataset/synthetic/style.py), four folds by sequence; fold 0's validation sequences choose
   the best checkpoint, its training labels join the stream;
2. train.py with configs/pretrain.yaml: every epoch `data.render.frames_per_epoch` new rendered
   frames (never written to disk), a progress bar per epoch and the time left after the first;
3. the best checkpoint released as fp16 weights with a JSON card (models/release.py) in
   OUT/weights/default.pt, scored on freshly rendered frames of every style (experiments.transfer)
   and, when the DeepVOG video of ../shared/real is there, on its pupils (experiments.real_eye).

Copy OUT/weights/default.* to weights/ to ship it (only when it scores better: every version
stays in git history). A rerun continues a stopped training (`--resume auto`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from config.schema import load_config
from dataset.synthetic import is_complete
from models.release import release_weights
from scripts.demo import STAGE_TIMES, stage

REAL_VIDEO = Path("../shared/real/deepvog/demo.mp4")


# fmt: off
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pretrain"), help="output folder (default: pretrain)")
    parser.add_argument("--config", type=Path, default=Path("configs/pretrain.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides, as train.py's --set")
    parser.add_argument("--epochs", type=int, help="overrides the config's epochs")
    parser.add_argument("--val-sequences", type=int, default=48, help="rendered validation sequences (8 frames each)")
    parser.add_argument("--score-frames", type=int, default=60, help="fresh frames per style to score the result")
    parser.add_argument("--real-video", type=Path, default=REAL_VIDEO,
                        help="the DeepVOG video with pupil_ellipses.json beside it, scored when present")
    args = parser.parse_args(argv)
    out = args.out
    data, runs, weights = out / "data", out / "runs", out / "weights" / "default.pt"
    start = time.perf_counter()
    # The code the run trains with: read now, as later commits may land while it trains.
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    config = load_config(args.config, args.overrides)
    styles = ",".join(config.data.render.styles)

    if is_complete(data):
        print(f"==> [data] {data} exists: kept (delete it to regenerate)")
    else:
        stage("data", "-m", "dataset.synthetic", "--out", data, "--style", styles, "--sequences", args.val_sequences,
              "--frames", 8, "--label-every", 2, "--test-per-sequence", 0, "--seed", 1, "--workers", 2)
        stage("folds", "-m", "dataset.create_kfolds", "--data-dir", data, "--folds", 4, "--by", "sequence")
    extra = [x for o in args.overrides for x in ("--set", o)]
    extra += ["--epochs", str(args.epochs)] if args.epochs else []
    stage("train", "train.py", "--config", args.config, "--data-dir", data, "--fold", 0, "--output-dir", runs,
          "--name", "pretrain", "--resume", "auto", *extra)
    best = runs / "pretrain" / "fold_0" / "best.pt"
    train_s = sum(s for name, s in STAGE_TIMES if name == "train")

    scores = out / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    stage("score styles", "-m", "experiments.transfer", "--checkpoints", best, "--frames", args.score_frames,
          "--json", scores / "styles.json")
    card_scores = {"rendered": json.loads((scores / "styles.json").read_text())}
    ellipses = args.real_video.parent / "pupil_ellipses.json"
    if args.real_video.is_file() and ellipses.is_file():
        stage("score real video", "-m", "experiments.real_eye", "--checkpoints", best, "--video", args.real_video,
              "--json", scores / "real_eye.json")
        card_scores["deepvog_video"] = json.loads((scores / "real_eye.json").read_text())
    resolved = load_config(runs / "pretrain" / "fold_0" / "config.yaml")
    card = {
        "name": "default",
        "made_by": f"make pretrain (python -m scripts.pretrain --config {args.config}"
                   + "".join(f" --set {o}" for o in args.overrides) + (f" --epochs {args.epochs}" if args.epochs else "") + ")",
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "network": f"{resolved.network} / {resolved.encoder}, decoder {resolved.network_params}, scale {resolved.input.scale}",
        "trained_on": f"rendered eyes only, styles {styles}: {resolved.data.render.frames_per_epoch} new frames per epoch x "
                      f"{resolved.optimizer.schedule.epochs} epochs, plus the validation set's fold-0 training labels",
        "train_seconds": round(train_s, 1),
        "scores": card_scores,
    }
    card = release_weights(best, weights, card, trained_on=[])
    total = time.perf_counter() - start
    print("\n" + "=" * 60)
    print("OpenEDS-Seg pretrain summary")
    for name, seconds in STAGE_TIMES:
        print(f"  {name:<18}  {seconds:7.1f} s")
    print(f"  {'total':<18}  {total:7.1f} s")
    for style, row in card_scores["rendered"]["styles"].items():
        print(f"  rendered {style:<9} mIoU {row['miou']:.4f}")
    if "deepvog_video" in card_scores:
        real = card_scores["deepvog_video"]
        print(f"  DeepVOG video: pupil found {real['pupil_found']:.1%}, centre error median {real['centre_error_median']:.2f} px "
              f"(p90 {real['centre_error_p90']:.2f}), pupil IoU median {real['pupil_iou_median']:.3f}")
    print(f"  weights: {weights} ({card['bytes'] / 1e6:.1f} MB) and {weights.with_suffix('.json')}")
    print("=" * 60)
# fmt: on


if __name__ == "__main__":
    main()
