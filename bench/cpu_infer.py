"""CPU inference on trained checkpoints: PyTorch against onnxruntime (export.py's graphs).

Two tables:
- latency: one model, batch 1, full-resolution logits (400 x 640) from uint8 frames held in
  memory: PyTorch fp32 (the engine, channels_last as predict_ensemble.py chooses it), PyTorch
  bf16 (only where bf16 is native: AMX), onnxruntime fp32 and int8;
- ensemble: 2 models + hflip from PNG files to class maps, as predict_ensemble.py runs
  (DataLoader, batch 1, the engine's predict_batches), against the recipe's loop
  (bench/naive.py: batch 1, numpy pre-processing, a forward pass per model and view), with the
  share of pixels whose class agrees with that loop's.

Checkpoints: `--checkpoints A.pt B.pt` (with `--data-dir D`, whose `test.txt` frames are
predicted); by default the two folds `make demo` trains (demo/runs/cpu_fast/fold_*/best.pt on
demo/data). Without them the bench trains nothing: it falls back to two random-init models of
the cpu_fast architecture (BatchNorm calibrated on a few frames) and says so in the table,
since agreement figures on random-init models mean little (their logit margins are tiny).
The int8 graphs are calibrated on labelled frames of the data dir (training frames, not the
predicted ones). onnxruntime's own kernels (MLAS) choose their instruction set from CPUID:
ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA do not limit them; `python -m bench.avx2` (bench/avx2.py)
hides AVX-512 from CPUID as well, so under it both runtimes run their AVX2 kernels.

    python -m bench.cpu_infer [--checkpoints A.pt B.pt --data-dir D] [--frames 24] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

if not __package__:  # run as a file (python bench/cpu_infer.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import synthetic_data
from bench.infer import make_checkpoints
from bench.naive import naive_predict
from config.ensemble import spec_from_checkpoints
from config.schema import load_config
from dataset.openeds import OpenEDSIndex, UnlabeledDataset, image_relpath, read_image, read_sample_list
from dataset.synthetic.render import eye_frames
from inference.engine import EnsemblePredictor
from inference.export import ExportSettings, calibration_frames, export_members
from inference.members import Member, load_members
from runtime.device import prediction_workers
from runtime.hardware import bf16_choice, channels_last_choice

__all__ = ["find_checkpoints", "latency_rows", "ensemble_rows", "run", "render_tables"]

ROOT = Path(__file__).resolve().parents[1]
DEMO_RUNS = ROOT / "demo" / "runs" / "cpu_fast"
DEMO_DATA = ROOT / "demo" / "data"


def find_checkpoints(
    work: Path, checkpoints: list[str] | None, data_dir: Path | None
) -> tuple[list[str], Path, str]:
    """(checkpoint paths, data dir, what they are): given ones, make demo's, or random-init ones."""
    if checkpoints:
        return checkpoints, data_dir or DEMO_DATA, "trained checkpoints given"
    found = sorted(str(path) for path in DEMO_RUNS.glob("fold_*/best.pt"))[:2]
    if len(found) == 2 and (DEMO_DATA / "test.txt").is_file():
        return found, DEMO_DATA, "trained: make demo's two folds"
    data = synthetic_data(work / "data")
    config = load_config(ROOT / "configs" / "cpu_fast.yaml", ["cpu_bf16=false"])
    paths = make_checkpoints(work, data, config, count=2)
    return (
        [str(path) for path in paths],
        data,
        "RANDOM INIT (no trained checkpoints found: run make demo first)",
    )


def _frame_keys(data_dir: Path, count: int) -> list[str]:
    test = data_dir / "test.txt"  # the bench's own synthetic data has an empty one
    if test.is_file() and test.read_text().strip():
        return read_sample_list(test)[:count]
    return OpenEDSIndex.from_dir(data_dir).all_keys()[:count]


def _calibration(data_dir: Path, avoid: set[str]) -> list[Path]:
    keys = [key for key in OpenEDSIndex.from_dir(data_dir).labeled_keys() if key not in avoid]
    return [data_dir / image_relpath(key) for key in keys]


def _export(members: list[Member], out: Path, tta: str, int8: bool, calibration: list[Path]) -> list[Member]:
    # Any agreement is accepted here: the tables report it against the recipe's loop.
    frames, source = None, None
    if int8:  # the list's frames; rendered eyes where the data has none to spare (the tests' tiny sets)
        frames, source = (
            calibration_frames(calibration) if calibration else (eye_frames(16, 1), "16 synthetic eye frames")
        )
    settings = ExportSettings(
        out, eye_frames(8, seed=0), tta=tta, int8=int8, calibration=frames, calibration_source=source,
        min_agreement=0.0,
    )  # fmt: skip
    export_members(members, settings)
    return load_members(spec_from_checkpoints([str(out)]))


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _torch_predictor(
    members: list[Member], tta: str, amp_dtype: torch.dtype | None = None
) -> EnsemblePredictor:
    for member in members:
        if (
            hasattr(member.model, "net")
            and channels_last_choice(member.config.channels_last, torch.device("cpu")).value
        ):
            member.model.to_channels_last()
    return EnsemblePredictor([(m.model, m.weight) for m in members], tta=tta, amp_dtype=amp_dtype)


def latency_rows(
    pt_one: list[Member], onnx_fp32: list[Member], onnx_int8: list[Member], frames: np.ndarray, repeats: int
) -> list[dict]:
    """One model, batch 1, logits at full resolution."""
    batches = [torch.from_numpy(frame[None]) for frame in frames]
    settings: list[tuple[str, EnsemblePredictor | None, str]] = [
        ("PyTorch fp32", _torch_predictor(pt_one, "none"), "engine, batch 1, channels_last as chosen"),
    ]
    bf16 = bf16_choice("auto", torch.device("cpu"))
    settings.append(
        (
            "PyTorch bf16",
            _torch_predictor(pt_one, "none", torch.bfloat16) if bf16.value else None,
            bf16.reason,
        )
    )
    settings += [
        ("onnxruntime fp32", _torch_predictor(onnx_fp32, "none"), "export.py --tta none"),
        ("onnxruntime int8", _torch_predictor(onnx_int8, "none"), "export.py --tta none --int8"),
    ]
    rows = []
    for name, predictor, note in settings:
        if predictor is None:
            rows.append({"name": name, "ms": None, "fps": None, "note": f"not run: {note}"})
            continue
        cycle = itertools.cycle(batches)
        seconds = _time(lambda p=predictor, c=cycle: p.logits(next(c)), repeats)
        rows.append({"name": name, "ms": seconds * 1000, "fps": 1 / seconds, "note": note})
    return rows


def _engine_labels(
    members: list[Member], data_dir: Path, keys: list[str], workers: int, amp_dtype=None
) -> tuple[np.ndarray, float]:
    """As predict_ensemble.py on a CPU: batch 1, a DataLoader decoding PNGs, hflip.

    Seconds for all frames at the rate measured after the first one (DataLoader workers start
    once per run, not per frame; the recipe's loop is timed after a warm-up frame too).
    """
    predictor = _torch_predictor(members, "hflip", amp_dtype)
    dataset = UnlabeledDataset(data_dir, keys)
    predictor.predict(dataset[0]["image"][None])  # warm-up: kernels for this shape
    loader = DataLoader(dataset, batch_size=1, num_workers=workers)
    labels, start = [], 0.0
    for _, batch_labels, _ in predictor.predict_batches(loader):
        labels.append(batch_labels.numpy())
        if len(labels) == 1:  # steady state: the workers' start-up is not timed
            start = time.perf_counter()
    return np.concatenate(labels), (time.perf_counter() - start) * len(keys) / max(1, len(keys) - 1)


def ensemble_rows(
    pt: list[Member],
    onnx_fp32: list[Member],
    onnx_int8: list[Member],
    data_dir: Path,
    keys: list[str],
    workers: int,
    onnx_separate: list[Member] | None = None,
) -> list[dict]:
    """2 models + hflip: the recipe's loop, then the engine with each kind of member."""
    models = [member.model for member in pt]
    naive_predict(models, data_dir, keys[:1])  # warm-up
    reference, seconds = naive_predict(models, data_dir, keys)
    naive_fps = len(keys) / seconds
    rows = [{"name": "recipe's loop (bench/naive.py), fp32", "fps": naive_fps, "speedup": 1.0, "agree": 1.0}]
    runs: list[tuple[str, list[Member], torch.dtype | None]] = [
        ("predict_ensemble, PyTorch fp32 (2 checkpoints)", pt, None),
    ]
    if bf16_choice("auto", torch.device("cpu")).value:
        runs.append(("predict_ensemble, PyTorch bf16 (2 checkpoints)", pt, torch.bfloat16))
    if onnx_separate:
        runs.append(
            ("predict_ensemble, onnxruntime fp32 (2 graphs, views by the engine)", onnx_separate, None)
        )
    runs += [
        ("predict_ensemble, onnxruntime fp32 (one graph: 2 models + hflip)", onnx_fp32, None),
        ("predict_ensemble, onnxruntime int8 (one graph: 2 models + hflip)", onnx_int8, None),
    ]
    for name, members, amp_dtype in runs:
        labels, seconds = _engine_labels(members, data_dir, keys, workers, amp_dtype)
        fps = len(keys) / seconds
        rows.append(
            {
                "name": name,
                "fps": fps,
                "speedup": fps / naive_fps,
                "agree": float((labels == reference).mean()),
            }
        )
    return rows


def run(
    work: Path,
    checkpoints: list[str] | None = None,
    data_dir: Path | None = None,
    frames: int = 24,
    repeats: int = 20,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> dict:
    """Export the graphs, then both tables; a dict for render_tables (and --json)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work.mkdir(parents=True, exist_ok=True)
    paths, data_dir, what = find_checkpoints(work, checkpoints, data_dir)
    keys = _frame_keys(data_dir, frames)
    calibration = _calibration(data_dir, set(keys))
    log(f"checkpoints ({what}): {paths}; {len(keys)} frames of {data_dir}")
    pt = load_members(spec_from_checkpoints(paths))
    exports = {}
    for name, members, tta, int8 in (
        ("one_fp32", pt[:1], "none", False),
        ("one_int8", pt[:1], "none", True),
        ("two_fp32", pt[1:], "none", False),
        ("ens_fp32", pt, "hflip", False),
        ("ens_int8", pt, "hflip", True),
    ):
        exports[name] = _export(members, work / f"{name}.onnx", tta, int8, calibration)
        info = json.loads((work / f"{name}.json").read_text())
        log(
            f"exported {name}: agreement with the engine {info['agreement']['pixels']:.4%} (synthetic frames)"
        )
    images = np.stack([read_image(data_dir / image_relpath(key))[None] for key in keys[:8]])
    latency = latency_rows(pt[:1], exports["one_fp32"], exports["one_int8"], images, repeats)
    for row in latency:
        log(f"latency {row['name']}: {row['ms'] and round(row['ms'], 1)} ms")
    separate = exports["one_fp32"] + exports["two_fp32"]
    ensemble = ensemble_rows(pt, exports["ens_fp32"], exports["ens_int8"], data_dir, keys, workers, separate)
    for row in ensemble:
        log(f"{row['name']}: {row['fps']:.2f} frames/s, x{row['speedup']:.2f}, agreement {row['agree']:.4%}")
    config = pt[0].config
    return {
        "model": f"{config.network}/{config.encoder} at input scale {config.input.scale}",
        "checkpoints": what,
        "frames": len(keys),
        "threads": torch.get_num_threads(),
        "workers": workers,
        "latency": latency,
        "ensemble": ensemble,
    }


def render_tables(result: dict) -> list[str]:
    """Markdown: the latency table, then the ensemble ratio table."""
    lines = [
        f"CPU inference (bench/cpu_infer.py): {result['model']}, checkpoints: {result['checkpoints']}; "
        f"{result['threads']} threads.",
        "",
        "Latency, one model, batch 1, logits at full resolution (uint8 frames in memory):",
        "",
        "| backend | ms/frame | frames/s | note |",
        "|---|---:|---:|---|",
    ]
    for row in result["latency"]:
        if row["ms"] is None:
            lines.append(f"| {row['name']} | - | - | {row['note']} |")
        else:
            lines.append(f"| {row['name']} | {row['ms']:.1f} | {row['fps']:.1f} | {row['note']} |")
    lines += [
        "",
        f"2 models + hflip, {result['frames']} frames from PNG to class map, batch 1, "
        f"{result['workers']} DataLoader workers; agreement: pixels whose class equals the recipe loop's:",
        "",
        "| run | frames/s | vs recipe's loop | pixel agreement |",
        "|---|---:|---:|---:|",
    ]
    for row in result["ensemble"]:
        lines.append(f"| {row['name']} | {row['fps']:.2f} | x{row['speedup']:.2f} | {row['agree']:.4%} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs=2, help="two trained checkpoints (default: make demo's)")
    parser.add_argument("--data-dir", type=Path, help="their data: test.txt frames are predicted")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per latency row")
    parser.add_argument(
        "--workers", type=int, help="DataLoader workers (default: predict_ensemble.py's on this CPU)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_cpu_") as tmp:
        workers = prediction_workers(torch.device("cpu")) if args.workers is None else args.workers
        result = run(Path(tmp), args.checkpoints, args.data_dir, args.frames, args.repeats, workers)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\n".join(render_tables(result)))


if __name__ == "__main__":
    main()
