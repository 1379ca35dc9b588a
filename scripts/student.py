"""`make student`: teacher ensemble -> distilled student -> labels-only student -> scores -> export -> segment.

    python -m scripts.student --out student [--data-dir demo/data] [--teacher-checkpoints A.pt B.pt]

Stages, each the real command a user would type (printed before it runs):
1. the teacher: the given checkpoints, or `make demo`'s (demo/runs/cpu_fast/fold_*/best.pt on
   demo/data) when they are there, or two folds of configs/cpu_fast.yaml trained as the demo does;
2. student folds by sequence (create_kfolds --by sequence --out-dir): the teacher's folds hold
   validation labels in every sequence, and the leakage rule (inference/pseudo_keys.py) would
   leave no unlabeled frame to distil on; whole validation sequences leave the others;
3. the distilled student: train.py --config configs/student.yaml --teacher <ensemble YAML> (its
   probabilities of the allowed unlabeled frames are cached first, uint8);
4. the labels-only student with the same compute: the same steps and images per step, all labelled
   (epochs / (1 - distill.share));
5. the three scored on the held-out test frames: predict_ensemble.py --min-area auto, then
   validate.py against the test ground truth. The teacher with hflip TTA (as the demo), the
   students on one view (as they run at camera rate);
6. export.py (one view, fp32), then segment.py through that graph on a synthetic 640 x 400 video:
   frames/s, pupil.png and measurements.csv.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as a file (python scripts/student.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from config.schema import load_config
from dataset.synthetic import is_complete
from scripts.demo import STAGE_TIMES, stage

ROOT = Path(__file__).resolve().parents[1]
STUDENT_CONFIG = ROOT / "configs" / "student.yaml"
TEACHER_CONFIG = ROOT / "configs" / "cpu_fast.yaml"
DEMO_CHECKPOINTS = "demo/runs/cpu_fast/fold_*/best.pt"


def teacher_checkpoints(args: argparse.Namespace, data: Path, out: Path) -> list[Path]:
    """The given checkpoints, the demo's, or two cpu_fast folds trained now (the demo's way)."""
    if args.teacher_checkpoints:
        return args.teacher_checkpoints
    found = sorted(glob.glob(DEMO_CHECKPOINTS))
    if found and data.resolve() == Path("demo/data").resolve():
        print(f"==> [teacher] reusing make demo's checkpoints: {', '.join(found)}")
        return [Path(path) for path in found]
    stage("teacher folds", "-m", "dataset.create_kfolds", "--data-dir", data, "--folds", 5, "--by", "frame",
          "--exclude", data / "test.txt")  # fmt: skip
    checkpoints = []
    for fold in (0, 1):
        stage(f"teacher fold {fold}", "train.py", "--config", TEACHER_CONFIG, "--data-dir", data, "--fold", fold,
              "--output-dir", out / "runs", "--name", "teacher", "--resume", "auto")  # fmt: skip
        checkpoints.append(out / "runs" / "teacher" / f"fold_{fold}" / "best.pt")
    return checkpoints


def score(name: str, data: Path, out: Path, checkpoints: list[Path], tta: str) -> dict:
    """predict_ensemble.py --min-area auto on the test frames, then validate.py: its metrics."""
    preds, metrics = out / "preds" / name, out / "metrics" / f"{name}.json"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    stage(f"predict {name}", "predict_ensemble.py", "--data-dir", data, "--label-file", data / "test.txt",
          "--save-dir", preds, "--checkpoints", *checkpoints, "--tta", tta, "--min-area", "auto", "--overwrite")  # fmt: skip
    stage(f"validate {name}", "validate.py", "--data-dir", data, "--pred-dir", preds, "--gt-pkl",
          data / "test_sampleName_GT.pkl", "--json", metrics)  # fmt: skip
    return json.loads(metrics.read_text())


def export_and_segment(student: Path, out: Path) -> str:
    """export.py -> ONNX (one view), then segment.py on a synthetic 640 x 400 video through that
    graph, one view, as a camera would run it. Returns segment.py's frames/s line."""
    onnx, video, segmented = out / "student.onnx", out / "eye.mp4", out / "segment"
    stage("export", "export.py", "--checkpoint", student, "--out", onnx, "--tta", "none")
    stage("video", "-m", "dataset.synthetic.video", "--out", video, "--frames", 200, "--fps", 100,
          "--size", "640x400")  # fmt: skip
    stage("segment", "segment.py", "--checkpoints", onnx, "--input", video, "--out", segmented, "--tta", "none",
          "--overwrite")  # fmt: skip
    summary = json.loads((segmented / "summary.json").read_text())
    return (
        f"segment.py with student.onnx: {summary['frames']} frames of {video.name} (640 x 400) at "
        f"{summary['frames_per_s']:.1f} frames/s ({segmented}/pupil.png, measurements.csv)"
    )


def parameters(checkpoint: Path) -> int:
    from models.checkpoint import model_from_checkpoint

    model, _, _ = model_from_checkpoint(checkpoint)
    return sum(param.numel() for param in model.parameters())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("student"))
    parser.add_argument("--data-dir", type=Path, help="OpenEDS-layout data with test.txt and its ground truth "
                        "(default: demo/data if make demo made it, else synthetic data generated in OUT/data)")  # fmt: skip
    parser.add_argument("--teacher-checkpoints", type=Path, nargs="+", help="the teacher ensemble's members")
    parser.add_argument("--config", type=Path, default=STUDENT_CONFIG, help="the student's config")
    parser.add_argument("--fold", type=int, default=0, help="student fold (by sequence)")
    parser.add_argument("--folds", type=int, default=5, help="student folds (by sequence)")
    args = parser.parse_args(argv)
    out, start = args.out, time.perf_counter()
    data = args.data_dir or (Path("demo/data") if is_complete(Path("demo/data")) else out / "data")
    if not is_complete(data) and args.data_dir is None:
        stage("data", "-m", "dataset.synthetic", "--out", data, "--sequences", 24, "--frames", 60,
              "--label-every", 10, "--test-per-sequence", 5, "--workers", 2)  # fmt: skip
    teacher = teacher_checkpoints(args, data, out)
    ensemble = out / "teacher.yaml"
    ensemble.parent.mkdir(parents=True, exist_ok=True)
    members = "".join(f"  - {{checkpoint: {Path(path).resolve()}, weight: 1.0}}\n" for path in teacher)
    ensemble.write_text(f"tta: hflip\nmembers:\n{members}")
    folds = out / "folds"
    stage("student folds", "-m", "dataset.create_kfolds", "--data-dir", data, "--folds", args.folds, "--by", "sequence",
          "--out-dir", folds, "--exclude", data / "test.txt")  # fmt: skip

    config = load_config(args.config)
    epochs = config.optimizer.schedule.epochs
    labels_only_epochs = round(epochs / (1 - config.distill.share))
    common = ["--config", args.config, "--data-dir", data, "--folds-dir", folds, "--fold", args.fold,
              "--output-dir", out / "runs", "--resume", "auto"]  # fmt: skip
    stage("distilled student", "train.py", *common, "--name", "student_distilled", "--teacher", ensemble)
    stage(
        "labels-only student", "train.py", *common, "--name", "student_labels", "--epochs", labels_only_epochs
    )
    runs = {
        "teacher ensemble": (list(teacher), "hflip"),
        "distilled student": ([out / "runs" / "student_distilled" / f"fold_{args.fold}" / "best.pt"], "none"),
        "labels-only student": ([out / "runs" / "student_labels" / f"fold_{args.fold}" / "best.pt"], "none"),
    }
    scores = {name: score(name.split()[0], data, out, paths, tta) for name, (paths, tta) in runs.items()}
    rate = export_and_segment(runs["distilled student"][0][0], out)

    times = dict(STAGE_TIMES)
    print("\n" + "=" * 72)
    print("OpenEDS-Seg student summary (test frames, --min-area auto)")
    print(f"  {'model':<20} {'params':>9} {'views':>6} {'test mIoU':>10} {'training':>10}")
    trained = {
        "distilled student": times.get("distilled student"),
        "labels-only student": times.get("labels-only student"),
    }
    for name, (paths, tta) in runs.items():
        params = sum(parameters(path) for path in paths)
        seconds = trained.get(name)
        spent = f"{seconds:.0f} s" if seconds else "given"
        print(f"  {name:<20} {params / 1e6:>8.3f}M {tta:>6} {scores[name]['miou']:>10.4f} {spent:>10}")
    gap = scores["distilled student"]["miou"] - scores["teacher ensemble"]["miou"]
    gain = scores["distilled student"]["miou"] - scores["labels-only student"]["miou"]
    print(f"  distilled - teacher {gap:+.4f} (target: within 0.01); distilled - labels-only {gain:+.4f}")
    print(f"  segment: {rate}")
    print(f"  total {time.perf_counter() - start:.0f} s; latency: python -m bench.student (BENCHMARKS.md)")
    print("=" * 72)


if __name__ == "__main__":
    main()
