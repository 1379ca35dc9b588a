"""`make bench`: inference levers, training throughput and peak memory on this machine, and CPU
inference on trained checkpoints against onnxruntime (bench/cpu_infer.py: the latency table and
the 2-model + hflip ratio table), written as the "## Speed and memory" section of BENCHMARKS.md
(the rest of the file is left alone).

    python -m bench.run_all [--frames 8] [--epochs 1] [--predict-counts 500 5000] [--compile]
                            [--checkpoints A.pt B.pt --data-dir D] [--out BENCHMARKS.md]
    python -m bench.avx2 python -m bench.run_all --quick     # as on an AVX2 CPU (bench/avx2.py)

`make bench` runs both: natively, then limited to AVX2 the way an ordinary CPU (AVX2 laptop,
AMD Zen 2/3, older Xeon) runs, each into its own block (BENCHMARKS.md says how the limit was
checked against a real AVX2 machine). --quick keeps the rows that differ between CPUs: the
naive loops, the engine's fp32 and bf16 settings, the three training loops.

Sized for a 2-core CPU (about 8 minutes before the CPU tables, which export five graphs and
time 24 frames per row: a few minutes more, not measured on a quiet machine): models, data and
frame counts are small; the
figures are throughput ratios on one machine, not absolute numbers to compare across machines.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

if not __package__:  # run as a file (python bench/run_all.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import cpu_infer, isa_limit, machine_info
from bench.infer import LEVERS, run_levers
from bench.memory import measure
from bench.train import TRAIN_CONFIG

__all__ = ["HEADING", "BEGIN", "END", "render_section", "update_markdown", "main"]

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Speed and memory"


def _inference_table(result: dict, memory: dict[str, dict]) -> list[str]:
    lines = [
        f"Inference: {result['model']}, hflip TTA, {result['frames']} frames, CPU. "
        f"Pixel agreement is against the naive loop's class maps.",
        "",
        "| setting | frames/s | vs naive | pixel agreement | what changes |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['name']} | {row['fps']:.2f} | x{row['speedup']:.2f} | {row['agree']:.4%} | {row['note']} |"
        )
    naive, engine = memory["infer-naive"], memory["infer-engine"]
    lines += [
        "",
        f"Peak RSS (fresh process, {result['frames']} frames): naive loop {naive['main_mib']:.0f} MiB; "
        f"engine default {engine['main_mib']:.0f} MiB main, largest child {engine['largest_child_mib']:.0f} MiB.",
    ]
    return lines


def _training_table(rows: list[dict], data: str, epochs: int) -> list[str]:
    lines = [
        f"Training: configs/{TRAIN_CONFIG.name} model, {data}; one warm-up epoch, then {epochs} measured; "
        "each row a fresh process.",
        "",
        "| loop | images/s | vs naive | peak RSS main | largest child |",
        "|---|---:|---:|---:|---:|",
    ]
    naive = rows[0]["ips"]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['ips']:.2f} | x{row['ips'] / naive:.2f} | {row['main_mib']:.0f} MiB "
            f"| {row['largest_child_mib']:.0f} MiB |"
        )
    return lines


def _predict_table(rows: list[dict]) -> list[str]:
    lines = [
        "Predicting many frames (engine, 1 configs/tiny.yaml model, hflip, batch 8; frames repeated in "
        "memory from 8 decoded ones; each row a fresh process; 'largest child' includes a ~430 MiB "
        "helper process torch starts at import, so it is a floor, not a worker's size):",
        "",
        "| frames | workers | frames/s | peak RSS main | largest child |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['frames']} | {row['workers']} | {row['fps']:.1f} | {row['main_mib']:.0f} MiB "
            f"| {row['largest_child_mib']:.0f} MiB |"
        )
    return lines


BEGIN, END = "<!-- bench:begin (written by `make bench`, bench/run_all.py) -->", "<!-- bench:end -->"
# The AVX2-limited pass has a block of its own, after the native one.
AVX2_BEGIN, AVX2_END = (
    "<!-- bench-avx2:begin (written by `make bench`, bench/run_all.py) -->",
    "<!-- bench-avx2:end -->",
)
QUICK_LEVERS = (
    "engine default",
    "batch 1 + channels_last",
    "bf16 autocast",
    "batch 1 + channels_last + bf16",
)


def render_section(machine: dict, command: str, minutes: float, body: list[str], markers=(BEGIN, END)) -> str:
    """The generated block: machine, command, date, then the tables, between BEGIN/END markers."""
    limit = machine.get("limit")
    header = [
        markers[0],
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine['isa']}), "
        f"torch {machine['torch']}, {machine['threads']} threads"
        + (f"; **limited to AVX2** ({limit})" if limit else ""),
        f"- command: `{command}` ({minutes:.1f} min), date: {date.today().isoformat()}",
        "",
    ]
    return "\n".join([*header, *body, "", markers[1]]) + "\n"


def update_markdown(path: Path, block: str, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Put the generated block under "## Speed and memory", keeping everything else.

    Replaces an earlier block between the markers (hand-written notes around it stay); else
    appends the block to the section, creating the section at the end of the file if needed.
    """
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    begin, end = markers
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block.rstrip("\n") + rest.split(end, 1)[1]
    elif begin != BEGIN and END in text:  # a second block goes right after the native one
        head, rest = text.split(END, 1)
        text = head + END + "\n\n" + block.rstrip("\n") + rest
    elif HEADING in text:
        match = re.search(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", text, re.S | re.M)
        end = match.end()
        text = text[:end].rstrip("\n") + "\n\n" + block + ("\n" + text[end:] if text[end:] else "")
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8, help="frames of the inference comparison")
    parser.add_argument("--epochs", type=int, default=1, help="measured training epochs (after a warm-up)")
    parser.add_argument("--predict-counts", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (~1 min to build)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="only the rows that differ between CPUs")
    parser.add_argument(
        "--checkpoints",
        nargs=2,
        help="two trained checkpoints for the CPU tables (default: make demo's, else random init)",
    )
    parser.add_argument("--data-dir", type=Path, help="their data dir (test.txt frames are predicted)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    machine = {**machine_info(), "limit": isa_limit()}
    print(f"machine: {machine}", flush=True)

    def log(message: str) -> None:
        print(f"  [{time.perf_counter() - start:5.0f} s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        work = Path(tmp)
        log("inference levers")
        levers = [lever for lever in LEVERS if lever[0] in QUICK_LEVERS] if args.quick else None
        inference = run_levers(work, args.frames, args.compile, log=log, levers=levers)
        memory = {what: measure(what, work, args.frames) for what in ("infer-naive", "infer-engine")}
        log(f"inference peak RSS: {memory}")
        training = []
        for what, name in (
            ("train-naive", "naive loop (recipe)"),
            ("train-fast", "train.py loop, fp32"),
            ("train-bf16", "train.py loop, cpu_bf16"),
        ):
            training.append({"name": name, **measure(what, work, epochs=args.epochs)})
            log(f"{name}: {training[-1]}")
        log("CPU inference on trained checkpoints (PyTorch and onnxruntime)")
        cpu = cpu_infer.run(work / "cpu_infer", args.checkpoints, args.data_dir, log=log)
        predict = []
        runs = [(count, 2) for count in args.predict_counts] + [(max(args.predict_counts), 0)]
        runs = [] if args.quick else runs
        for count, workers in runs:
            predict.append(
                {"frames": count, "workers": workers, **measure("predict", work, count, workers=workers)}
            )
            log(f"predict {count} frames, {workers} workers: {predict[-1]}")
    body = (
        _inference_table(inference, memory)
        + [""]
        + _training_table(
            training, "synthetic 4 sequences x 20 frames, 40 labelled (label_every 2)", args.epochs
        )
        + ([""] + _predict_table(predict) if predict else [])
        + [""]
        + cpu_infer.render_tables(cpu)
    )
    command = (
        "make bench"
        if argv is None and len(sys.argv) == 1
        else "python -m bench.run_all " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    if machine["limit"]:
        command = f"{machine['limit']} {command}"
    markers = (AVX2_BEGIN, AVX2_END) if machine["limit"] else (BEGIN, END)
    section = render_section(machine, command, (time.perf_counter() - start) / 60, body, markers)
    update_markdown(args.out, section, markers)
    print(section)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
