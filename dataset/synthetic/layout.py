"""Writing a synthetic dataset in the exact OpenEDS 2020 Sparse Segmentation layout.

Which frames of each sequence get a label and which are hidden test frames (`plan_sequence`),
then every frame rendered (dataset/synthetic/render.py) and written, index files last:

    S_<k>/<n>.png              every frame, 8-bit gray, 640 x 400
    S_<k>/label_<n>.npy        sparse labels, uint8 (400, 640), 0 bg, 1 sclera, 2 iris, 3 pupil
    images.txt, labels.txt     indexes at the root
    test.txt                   hidden-test frames, as `S_k/label_<n>.npy` lines (no file written)
    test_sampleName_GT.pkl     their ground truth: {"S_k/<n>.npy": mask}
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.synthetic.render import HEIGHT, WIDTH, EyeSequence
from dataset.synthetic.style import parse_styles
from utils.atomic import atomic_path, write_text_atomic
from utils.errors import InputError

__all__ = ["MARKER_NAME", "SequencePlan", "plan_sequence", "is_complete", "generate"]

# Marks a folder as ours (so a re-run may clear it); rewritten with the summary at the end.
# Completeness is signalled by images.txt, which is written last.
MARKER_NAME = "synthetic.json"
INDEX_NAMES = ("images.txt", "labels.txt", "test.txt", "test_sampleName_GT.pkl")
# Sensor noise defeats LZ matching anyway: Huffman-only is faster than level 1 and smaller
# (BENCHMARKS.md, "Numbers that used to live in code comments").
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


@dataclass(frozen=True)
class SequencePlan:
    """Which frames of one sequence get a label file and which are hidden test frames."""

    index: int
    frames: int
    labeled: tuple[int, ...]
    test: tuple[int, ...]


def plan_sequence(
    seed: int, index: int, frames: int, label_every: int, test_per_sequence: int
) -> SequencePlan:
    """Choose sparse labeled frames and hidden test frames for sequence `index`.

    Labels are stratified: one frame drawn uniformly from each of ~frames/label_every equal
    bins, so they spread through the sequence with jittered gaps (1 to 2*label_every-1
    apart, like the real 1-76). Test frames are unlabeled frames strictly between the first
    and last label, like the challenge's hidden frames. Raises InputError when the sequence
    is too short to hold them.
    """
    if frames < 2:
        raise InputError(f"--frames must be at least 2 (a first and a last label), got {frames}")
    rng = np.random.default_rng([seed, index, 1])
    count = max(2, round(frames / label_every))
    # Integer bins of width >= 1 (count <= frames), so every bin yields a distinct frame.
    edges = np.ceil(np.linspace(0, frames, count + 1)).astype(int)
    labeled = [int(rng.integers(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    inside = np.setdiff1d(np.arange(labeled[0] + 1, labeled[-1]), labeled)
    if len(inside) < test_per_sequence:
        raise InputError(
            f"--frames {frames} is too short: S_{index} has {len(inside)} unlabeled frames between its first and "
            f"last label, --test-per-sequence needs {test_per_sequence}"
        )
    test = np.sort(rng.choice(inside, size=test_per_sequence, replace=False)) if test_per_sequence else []
    return SequencePlan(index, frames, tuple(labeled), tuple(int(n) for n in test))


def _write_sequence(job: tuple[Path, int, SequencePlan, str]) -> dict[str, np.ndarray]:
    """Render and write every frame of one sequence; return the hidden test frames' masks."""
    out, seed, plan, style = job
    folder = out / f"S_{plan.index}"
    folder.mkdir(parents=True, exist_ok=True)
    sequence = EyeSequence(seed, plan.index, plan.frames, style)
    labeled, test = set(plan.labeled), set(plan.test)
    ground_truth = {}
    for n in range(plan.frames):
        image, label = sequence.render(n)
        if not cv2.imwrite(str(folder / f"{n}.png"), image, PNG_PARAMS):  # False, not an exception
            raise InputError("cannot write image (disk full or folder not writable?)", folder / f"{n}.png")
        if n in labeled:
            np.save(folder / f"label_{n}.npy", label)
        elif n in test:
            ground_truth[f"S_{plan.index}/{n}.npy"] = label
    return ground_truth


def is_complete(out: Path) -> bool:
    """Whether `out` holds a finished synthetic dataset: the marker says so, written last of all."""
    try:
        return json.loads((Path(out) / MARKER_NAME).read_text()).get("complete") is True
    except (OSError, ValueError, AttributeError):
        return False


def _single_thread() -> None:
    """Worker initialiser: one OpenCV thread per process, so N workers use N cores."""
    cv2.setNumThreads(1)


def _prepare_out(out: Path) -> None:
    """Make `out` ready: create it, or clear an earlier synthetic dataset; refuse anything else.

    The marker file claims the folder before any frame is written, so a re-run after a
    crash may clear it; the index files go first, so a half-cleared folder never looks
    complete.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write the output folder ({exc.strerror})", out) from exc
    entries = list(out.iterdir())
    if entries and not (out / MARKER_NAME).exists():
        raise InputError("output folder is not empty and was not written by dataset.synthetic", out)
    for name in INDEX_NAMES:
        (out / name).unlink(missing_ok=True)
    for path in entries:
        if path.is_dir() and path.name.startswith("S_"):
            shutil.rmtree(path)
    _write_text(out / MARKER_NAME, [json.dumps({"complete": False})])


def _write_text(path: Path, lines: list[str]) -> None:
    """Write an index file through a temp file and rename, so it is either whole or absent."""
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))


def generate(
    out: Path,
    sequences: int = 24,
    frames: int = 60,
    label_every: int = 10,
    test_per_sequence: int = 5,
    seed: int = 0,
    workers: int = 1,
    styles: str | tuple[str, ...] = "classic",
) -> dict:
    """Write a synthetic OpenEDS 2020 dataset to `out` and return a summary dict.

    Same arguments give byte-identical files whatever `workers` is (each sequence has its
    own seed). `styles`: renderer styles (dataset/synthetic/style.py), sequence k takes
    styles[k mod len(styles)]. Raises InputError for arguments that cannot make a valid dataset.
    """
    out = Path(out)
    styles = parse_styles(styles)
    for name, value, least in (
        ("--sequences", sequences, 1),
        ("--label-every", label_every, 1),
        ("--test-per-sequence", test_per_sequence, 0),
        ("--workers", workers, 1),
    ):
        if value < least:
            raise InputError(f"{name} must be at least {least}, got {value}")
    plans = [plan_sequence(seed, k, frames, label_every, test_per_sequence) for k in range(sequences)]
    _prepare_out(out)

    start = time.perf_counter()
    jobs = [(out, seed, plan, styles[plan.index % len(styles)]) for plan in plans]
    if workers == 1:
        results = [_write_sequence(job) for job in jobs]
    else:
        # spawn: safe when the caller already runs threads (torch, OpenCV).
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, sequences), initializer=_single_thread) as pool:
            results = pool.map(_write_sequence, jobs, chunksize=1)
    # Fresh arrays with the canonical uint8 dtype: masks unpickled from workers carry their
    # own dtype objects, which would change the pickle's memo and so its bytes.
    ground_truth = {}
    for result in results:
        for key, mask in result.items():
            ground_truth[key] = np.empty((HEIGHT, WIDTH), np.uint8)
            ground_truth[key][...] = mask

    # Index files last: the folder only looks complete once everything else is on disk.
    images = [f"S_{p.index}/{n}.png" for p in plans for n in range(frames)]
    labels = [f"S_{p.index}/label_{n}.npy" for p in plans for n in p.labeled]
    tests = [f"S_{p.index}/label_{n}.npy" for p in plans for n in p.test]
    with atomic_path(out / "test_sampleName_GT.pkl") as tmp, open(tmp, "wb") as handle:
        pickle.dump(ground_truth, handle, protocol=pickle.HIGHEST_PROTOCOL)
    _write_text(out / "test.txt", tests)
    _write_text(out / "labels.txt", labels)
    _write_text(out / "images.txt", images)
    seconds = time.perf_counter() - start
    summary = {
        "out": str(out),
        "sequences": sequences,
        "frames": len(images),
        "labels": len(labels),
        "test_frames": len(tests),
        "seed": seed,
        "styles": list(styles),
        "workers": workers,
        "seconds": round(seconds, 3),
        "frames_per_s": round(len(images) / seconds, 1),
        "frames_per_s_per_worker": round(len(images) / seconds / min(workers, sequences), 1),
    }
    args = {"frames_per_sequence": frames, "label_every": label_every, "test_per_sequence": test_per_sequence}
    _write_text(out / MARKER_NAME, [json.dumps({"complete": True, **args, **summary})])
    return summary
