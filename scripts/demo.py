"""`make demo`: the whole recipe on synthetic data, on the CPU, in minutes, ending in a report.

Every stage runs the real command a user would type (printed before it runs), so the demo
doubles as a walk-through. Stages: synthetic dataset -> folds -> train 2 folds of cpu_fast
-> [pseudo-label round] -> ensemble + hflip TTA on the held-out test frames ->
submission.json -> validate against the test ground truth -> a synthetic eye video (320 x 200,
with a blink) -> segment.py on it -> report folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

if not __package__:  # run as a file (python scripts/demo.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from config.schema import load_config
from dataset.synthetic import is_complete
from viz.demo_report import write_report

STAGE_TIMES: list[tuple[str, float]] = []


def _history_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def demo_eta(history: Path, demo_start: float, epochs: int, folds_left: int, test_frames: int) -> Callable:
    """A stage watcher: once the first fold's first epoch is logged, print the speed and the time
    the whole demo still needs (this fold, the other folds, prediction and scoring)."""

    def watch(process: subprocess.Popen) -> None:
        seen = len(_history_rows(history))  # a resumed run already has rows
        while process.poll() is None:
            rows = _history_rows(history)
            if len(rows) > seen:
                row = rows[-1]
                epoch_s, images_per_s = float(row["epoch_time_s"]), float(row["images_per_s"])
                epochs_left = epochs - int(row["epoch"]) + folds_left * epochs
                # Prediction: 2 views per model, a forward pass costs about a third of a training step.
                predict_s = test_frames * 2 * (folds_left + 1) / (3 * images_per_s) + 30
                left = epochs_left * epoch_s + predict_s
                elapsed = time.perf_counter() - demo_start
                finish = time.strftime("%H:%M", time.localtime(time.time() + left))
                print(f"==> [eta] {images_per_s:.1f} img/s, {epoch_s:.0f} s per epoch: the demo needs about "
                      f"{left / 60:.0f} more min ({(elapsed + left) / 60:.0f} min in all), ending near {finish}",
                      flush=True)
                return
            time.sleep(2)

    return watch


def stage(name: str, *command: object, watch: Callable[[subprocess.Popen], None] | None = None) -> None:
    """Run one stage's command, streaming its output, and record its time."""
    line = " ".join(str(c) for c in command)
    print(f"\n==> [{name}] {line}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *map(str, command)])
    if watch is not None:
        threading.Thread(target=watch, args=(process,), daemon=True).start()
    returncode = process.wait()
    seconds = time.perf_counter() - start
    if returncode != 0:
        print(f"==> [{name}] FAILED (exit {returncode}) after {seconds:.0f}s", flush=True)
        sys.exit(returncode)
    STAGE_TIMES.append((name, seconds))
    print(f"==> [{name}] done in {seconds:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo"))
    parser.add_argument("--config", type=Path, default=Path("configs/cpu_fast.yaml"))
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1], help="folds to train")
    parser.add_argument("--pseudo", action="store_true", help="add one pseudo-label round (see BENCHMARKS.md)")
    parser.add_argument("--sequences", type=int, default=24)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args(argv)
    out, config = args.out, args.config
    data, runs, preds, report = out / "data", out / "runs", out / "preds", out / "report"
    start = time.perf_counter()

    if is_complete(data):
        print(f"==> [data] {data} exists: kept (delete it to regenerate)")
    else:
        stage("data", "-m", "dataset.synthetic", "--out", data, "--sequences", args.sequences,
              "--frames", args.frames, "--label-every", 10, "--test-per-sequence", 5, "--workers", 2)
    # Folds by frame: validation frames sit between training labels of the same sequences,
    # like the challenge's test frames, so val mIoU estimates the test score.
    # Test frames are left out of unlabeled.txt: pseudo-labels never train on scored images.
    stage("folds", "-m", "dataset.create_kfolds", "--data-dir", data, "--folds", 5, "--by", "frame",
          "--exclude", data / "test.txt")
    name = config.stem
    epochs = load_config(config).optimizer.schedule.epochs
    test_frames = len((data / "test.txt").read_text().split())
    for i, fold in enumerate(args.folds):
        eta = demo_eta(runs / name / f"fold_{fold}" / "history.csv", start, epochs, len(args.folds) - 1, test_frames)
        stage(f"train fold {fold}", "train.py", "--config", config, "--data-dir", data, "--fold", fold,
              "--output-dir", runs, "--resume", "auto", watch=eta if i == 0 else None)
    checkpoints = [runs / name / f"fold_{fold}" / "best.pt" for fold in args.folds]
    if args.pseudo:
        # One round per fold, from that fold's own model: it never saw the fold's val labels,
        # so the leakage rule (inference/pseudo_keys.py) keeps every pseudo-labelled frame.
        for fold, checkpoint in zip(args.folds, checkpoints, strict=True):
            pseudo = out / "pseudo" / f"fold_{fold}"
            stage(f"pseudo-labels fold {fold}", "predict_ensemble.py", "--data-dir", data,
                  "--label-file", data / "unlabeled.txt", "--pseudo-dir", pseudo, "--checkpoints", checkpoint,
                  "--tta", "hflip")
            stage(f"train fold {fold} + pseudo", "train.py", "--config", config, "--data-dir", data, "--fold", fold,
                  "--output-dir", runs, "--name", f"{name}_pseudo", "--pseudo-dir", pseudo, "--resume", "auto")
        checkpoints = [runs / f"{name}_pseudo" / f"fold_{fold}" / "best.pt" for fold in args.folds]
    stage("predict test", "predict_ensemble.py", "--data-dir", data, "--label-file", data / "test.txt",
          "--save-dir", preds, "--checkpoints", *checkpoints, "--tta", "hflip", "--min-area", "auto",
          "--submission", preds / "submission.json", "--overwrite")
    if report.exists():
        shutil.rmtree(report)
    report.mkdir(parents=True)
    stage("validate", "validate.py", "--data-dir", data, "--pred-dir", preds, "--gt-pkl",
          data / "test_sampleName_GT.pkl", "--json", report / "metrics.json", "--overlays", report / "worst", "--worst", 12)
    # segment.py on a video of another resolution than the training frames, with a blink.
    video, segmented = out / "eye.mp4", out / "segment"
    stage("video", "-m", "dataset.synthetic.video", "--out", video, "--frames", 40, "--fps", 10, "--size", "320x200")
    stage("segment video", "segment.py", "--checkpoints", *checkpoints, "--input", video, "--out", segmented,
          "--overlay", "--overwrite")
    segment = json.loads((segmented / "summary.json").read_text())
    shutil.copyfile(segmented / "pupil.png", report / "pupil.png")

    total = time.perf_counter() - start
    metrics = json.loads((report / "metrics.json").read_text())
    run_dirs = [checkpoints[i].parent for i in range(len(checkpoints))]
    method = "hflip TTA and --min-area auto (a class covering under half its smallest training-label area is dropped)"
    page = write_report(report, metrics, run_dirs, STAGE_TIMES, total, preds / "submission.json", method, segment)
    width = max(len(n) for n, _ in STAGE_TIMES)
    print("\n" + "=" * 60)
    print("OpenEDS-Seg demo summary")
    for stage_name, seconds in STAGE_TIMES:
        print(f"  {stage_name:<{width}}  {seconds:7.1f} s")
    print(f"  {'total':<{width}}  {total:7.1f} s")
    print(f"  test frames: {metrics['n_images']}   mIoU {metrics['miou']:.4f}   "
          f"dataset mIoU {metrics['miou_dataset']:.4f}   2019 mIoU {metrics['miou_2019']:.4f}")
    print(f"  segment.py: {segment['frames']} frames of {video} at {segment['frames_per_s']:.1f} frames/s, "
          f"{len(segment['blinks'])} blink(s): {segmented}")
    print(f"  submission: {preds / 'submission.json'}")
    print(f"  report:     {page}")
    print("=" * 60)


if __name__ == "__main__":
    main()
