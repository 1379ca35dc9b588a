"""Recipe search: which cpu_fast variant reaches the best test mIoU, and what pseudo-labels add.

Runs the real commands (train.py, predict_ensemble.py, validate.py) on the demo's synthetic
dataset (24 sequences x 60 frames, a label every 10 frames, 5 hidden test frames per
sequence, 5 folds by frame) and scores each fold model on the hidden test frames, the way
`make demo` scores its ensemble. Chains of commands run side by side (`--parallel`), which
is how one GPU is kept busy by these small models; on a 2-core CPU use --parallel 1.

A chain is one fold of one variant: train -> predict test -> validate. A pseudo-label chain
trains and scores the base model, then: pseudo-label the unlabeled frames (minus the hidden
test frames) with the fold's own model (never trained on the fold's val labels, so the
leakage rule keeps every frame) -> train a student from scratch on real + pseudo labels
(config pseudo.share, by default half of each epoch, so an epoch has twice the images) ->
score it; `pseudo2` repeats that from the student.

    python -m experiments.recipe_search --out runs/search --gpu 0 --parallel 4 --workers 3
    python -m experiments.recipe_search --out runs/search --variants pseudo1 e2x --folds 0

Results: OUT/results.jsonl (one line per scored model, appended as they finish) and
OUT/results.md (the table, rewritten after each).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if not __package__:  # run as a file (python experiments/recipe_search.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from config.schema import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "cpu_fast.yaml"

# name -> --set overrides on configs/cpu_fast.yaml. Epoch counts are relative to the config's
# own (E): e2x is the same compute as a pseudo-label student (half its samples pseudo), e3x
# that of teacher + student.
_E = load_config(CONFIG).optimizer.schedule.epochs
VARIANTS: dict[str, list[str]] = {  # in the order they are run after the pseudo chains
    "base": [],
    "e2x": [f"optimizer.schedule.epochs={2 * _E}"],
    "s0.75": ["input.scale=0.75"],
    "e3x": [f"optimizer.schedule.epochs={3 * _E}"],
    "lovasz": ["mask_loss.params.weights.lovasz=1"],
    "s1.0": ["input.scale=1.0"],
    "s0.375_e2x": ["input.scale=0.375", f"optimizer.schedule.epochs={2 * _E}"],
    "bs8": ["optimizer.batch_size=8"],
    "lr1e-3": ["optimizer.learning_rate=0.001"],
    # Cheaper per image, for CPUs without AMX (BENCHMARKS.md "Every CPU"), with explicit
    # settings (measured when cpu_fast was scale 0.5, 30 epochs, batch 8): scale 0.4 runs at
    # 160 x 256, which needs no padding; d64 is a narrower decoder.
    "s0.4_e20": ["input.scale=0.4", "optimizer.schedule.epochs=20", "optimizer.batch_size=8"],
    "s0.4_e30": ["input.scale=0.4", "optimizer.schedule.epochs=30", "optimizer.batch_size=8"],
    "s0.4_e40": ["input.scale=0.4", "optimizer.schedule.epochs=40", "optimizer.batch_size=8"],
    "s0.4_d64_e30": ["input.scale=0.4", "optimizer.schedule.epochs=30", "optimizer.batch_size=8",
                     "network_params.decoder_channels=[64,32,16,16,8]"],
    "s0.3_e40": ["input.scale=0.3", "optimizer.schedule.epochs=40", "optimizer.batch_size=8"],
    "s0.4_e20_bs4": ["input.scale=0.4", "optimizer.schedule.epochs=20", "optimizer.batch_size=4"],
    "s0.5_e30_bs8": ["input.scale=0.5", "optimizer.schedule.epochs=30", "optimizer.batch_size=8"],  # former cpu_fast
}
PSEUDO_CHAINS = ("pseudo1", "pseudo2")

_lock = threading.Lock()


def run(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        result = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"exit {result.returncode}: {' '.join(cmd)} (log: {log})")
    return time.perf_counter() - start


def best_val(run_dir: Path) -> float:
    with open(run_dir / "history.csv", newline="") as handle:
        values = [float(r["val_miou"]) for r in csv.DictReader(handle) if r.get("val_miou")]
    return max(values)


class Search:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, args.out.resolve()
        self.data = self.out / "data"
        # Folds by frame score like the demo; folds by sequence score eyes the model never saw.
        self.folds = self.data if args.by == "frame" else self.out / "folds_by_sequence"
        self.runs = self.out / ("runs" if args.by == "frame" else "runs_by_sequence")
        self.rows: list[dict] = []

    def device_args(self) -> list[str]:
        return ["--gpu", self.args.gpu] if self.args.gpu else ["--gpu", "cpu"]

    def train(self, name: str, fold: int, sets: list[str], log: Path, pseudo: Path | None = None) -> tuple[Path, float]:
        cmd = ["train.py", "--config", str(CONFIG), "--data-dir", str(self.data), "--fold", str(fold),
               "--folds-dir", str(self.folds), "--output-dir", str(self.runs), "--name", name, "--workers", str(self.args.workers),
               "--resume", "auto", *self.device_args()]
        for item in [*self.args.set, *sets]:
            cmd += ["--set", item]
        if pseudo is not None:
            cmd += ["--pseudo-dir", str(pseudo)]
        seconds = run(cmd, log)
        return self.runs / name / f"fold_{fold}", seconds

    def score(self, name: str, fold: int, run_dir: Path, train_s: float, log: Path, extra: dict) -> None:
        preds = self.out / "preds" / f"{name}_fold{fold}_by_{self.args.by}"
        metrics_file = preds / "metrics.json"
        run(["predict_ensemble.py", "--data-dir", str(self.data), "--label-file", str(self.data / "test.txt"),
             "--save-dir", str(preds), "--checkpoints", str(run_dir / "best.pt"), "--tta", "hflip",
             "--min-area", "auto", "--workers", str(self.args.workers), "--overwrite", *self.device_args()], log)
        run(["validate.py", "--data-dir", str(self.data), "--pred-dir", str(preds), "--gt-pkl",
             str(self.data / "test_sampleName_GT.pkl"), "--json", str(metrics_file)], log)
        metrics = json.loads(metrics_file.read_text())
        row = {"variant": name, "fold": fold, "by": self.args.by, "val_miou": round(best_val(run_dir), 4),
               "test_miou": round(metrics["miou"], 4), "test_miou_dataset": round(metrics["miou_dataset"], 4),
               "per_class": [round(v, 4) for v in metrics["per_class_iou"]], "train_s": round(train_s, 1), **extra}
        with _lock:
            self.rows.append(row)
            with open(self.out / "results.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            self.write_table()
        print(f"[{time.strftime('%H:%M:%S')}] {name} fold {fold}: val {row['val_miou']:.4f} "
              f"test {row['test_miou']:.4f} ({train_s:.0f} s training)", flush=True)

    def write_table(self) -> None:
        lines = ["| variant | folds by | fold | val mIoU | test mIoU | test dataset mIoU | IoU bg/sclera/iris/pupil | train s | note |",
                 "|---|---|---:|---:|---:|---:|---|---:|---|"]
        for r in sorted(self.rows, key=lambda r: (r["variant"], r.get("by", "frame"), r["fold"])):
            lines.append(f"| {r['variant']} | {r.get('by', 'frame')} | {r['fold']} | {r['val_miou']:.4f} | {r['test_miou']:.4f} | "
                         f"{r['test_miou_dataset']:.4f} | {' / '.join(f'{v:.3f}' for v in r['per_class'])} | "
                         f"{r['train_s']:.0f} | {r.get('note', '')} |")
        (self.out / "results.md").write_text("\n".join(lines) + "\n")

    def chain(self, name: str, fold: int) -> None:
        log = self.out / "logs" / f"{name}_fold{fold}.log"
        try:
            if name in VARIANTS:
                run_dir, seconds = self.train(name, fold, VARIANTS[name], log)
                self.score(name, fold, run_dir, seconds, log, {"note": " ".join(VARIANTS[name]) or "configs/cpu_fast.yaml"})
                return
            # A pseudo chain trains and scores its own base teacher (so no two processes ever
            # write one run folder), then one or two rounds of pseudo-labels.
            teacher, seconds = self.train("base", fold, [], log)
            self.score("base", fold, teacher, seconds, log, {"note": "configs/cpu_fast.yaml"})
            for round_ in range(1, int(name[-1]) + 1):
                pseudo = self.out / "pseudo" / f"round{round_}_fold{fold}"
                label_s = run(["predict_ensemble.py", "--data-dir", str(self.data), "--label-file",
                               str(self.data / "unlabeled.txt"), "--pseudo-dir", str(pseudo), "--checkpoints",
                               str(teacher / "best.pt"), "--tta", "hflip", "--workers", "2", "--overwrite",
                               *self.device_args()], log)
                kept = len(json.loads((pseudo / "pseudo.json").read_text())["keys"])
                student, seconds = self.train(f"pseudo{round_}", fold, [], log, pseudo=pseudo)
                note = f"round {round_}: {kept} pseudo-labelled frames kept, labelling {label_s:.0f} s"
                self.score(f"pseudo{round_}", fold, student, seconds, log, {"note": note})
                teacher = student
        except Exception as exc:  # one failed chain must not stop the others
            print(f"FAILED {name} fold {fold}: {exc}", flush=True)

    def prepare_data(self) -> None:
        if self.args.by == "sequence" and not (self.folds / "fold_0_train.txt").is_file():
            run(["-m", "dataset.create_kfolds", "--data-dir", str(self.data), "--folds", "5", "--by", "sequence",
                 "--out-dir", str(self.folds), "--exclude", str(self.data / "test.txt")], self.out / "logs" / "data.log")
        if (self.data / "unlabeled.txt").is_file():
            return
        run(["-m", "dataset.synthetic", "--out", str(self.data), "--sequences", str(self.args.sequences),
             "--frames", str(self.args.frames),
             "--label-every", "10", "--test-per-sequence", "5", "--workers", str(self.args.data_workers)],
            self.out / "logs" / "data.log")
        # unlabeled.txt without the hidden test frames: a measured gain then never comes from
        # self-training on the very images that are scored.
        run(["-m", "dataset.create_kfolds", "--data-dir", str(self.data), "--folds", "5", "--by", "frame",
             "--exclude", str(self.data / "test.txt")], self.out / "logs" / "data.log")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS, *PSEUDO_CHAINS],
                        choices=[*VARIANTS, *PSEUDO_CHAINS])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--gpu", default=None, help="GPU id; default: the CPU")
    parser.add_argument("--parallel", type=int, default=1, help="chains run side by side")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers per train.py")
    parser.add_argument("--data-workers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=24, help="synthetic data (the demo's: 24 x 60)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--by", choices=["frame", "sequence"], default="frame",
                        help="folds by frame (the demo's) or by sequence (eyes unseen in training); "
                        "test frames are scored either way")
    parser.add_argument("--prepare-only", action="store_true", help="make the data and folds, then stop")
    parser.add_argument("--set", action="append", default=[], help="override for every run, e.g. fp16=true")
    args = parser.parse_args(argv)
    search = Search(args)
    (search.out / "logs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    search.prepare_data()
    print(f"data ready in {time.perf_counter() - start:.0f} s: {search.data}", flush=True)
    if args.prepare_only:
        return
    # pseudo2 includes pseudo1's round, and both include base.
    names = list(args.variants)
    if any(n in PSEUDO_CHAINS for n in names):  # the pseudo chains score base themselves
        names = [n for n in names if n != "base" and (n != "pseudo1" or "pseudo2" not in names)]
    jobs = [(n, f) for n in names for f in args.folds]
    jobs.sort(key=lambda job: job[0] not in PSEUDO_CHAINS)  # longest chains first
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(lambda job: search.chain(*job), jobs))
    print(f"search done in {time.perf_counter() - start:.0f} s; table: {search.out / 'results.md'}", flush=True)


if __name__ == "__main__":
    main()
