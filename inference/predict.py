"""A prediction run: frames -> ensemble -> .npy masks and/or pseudo-labels, resumable and shardable.

The engine is inference/engine.EnsemblePredictor; this module owns the files around it:
- every .npy is written atomically (temp file + os.replace): a killed run never leaves a partial
  file, and a file of the exact size np.save gives a (400, 640) uint8 array counts as complete;
- a rerun skips complete frames; `.predict_state.json` in each output folder fingerprints what
  made its files (model weights + configs, weights, TTA, data dir, pseudo thresholds), and a run
  with another fingerprint refuses to mix its files in unless `overwrite` (which first deletes
  the files of the kind this run writes);
- `shard=(i, n)` handles frames i, i+n, ...; output.txt (and the submission) or pseudo.json is
  written by whichever shard finishes and finds every frame of the list done.

The frames come from a data dir of either layout (dataset.openeds.frame_reader). A plain folder's
masks are `<save-dir>/<name>.npy` (its key plus .npy, as `S_k/<n>.npy` is an OpenEDS key's), in the
models' 640 x 400 frame where its frames and masks are fitted (dataset/folder.py), so validate.py
scores them as it scores OpenEDS predictions; pseudo-labels and probabilities are OpenEDS-only.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dataset.folder import FolderIndex
from dataset.openeds import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    OpenEDSIndex,
    UnlabeledDataset,
    frame_reader,
    label_relpath,
    pred_relpath,
    write_sample_list,
)
from inference.engine import check_fused_views
from inference.members import Member
from inference.predictor import Predictor
from inference.pseudo import (
    JOURNAL_GLOB,
    FrameRecord,
    PseudoJournal,
    PseudoSettings,
    manifest_path,
    pseudo_manifest,
    pseudo_masks,
    read_journals,
    trained_on_union,
)
from inference.pseudo_keys import PSEUDO_MANIFEST
from inference.teacher import TEACHER_MANIFEST, probs_relpath, quantize_probs, save_probs, teacher_manifest
from utils.atomic import remove_stale_temp_files, save_npy_atomic, write_text_atomic
from utils.errors import InputError
from utils.folders import make_output_dir
from utils.sidecar import read_sidecar
from utils.submission import write_submission

__all__ = [
    "PredictJob",
    "RunResult",
    "parse_shard",
    "is_complete_mask",
    "run_prediction",
    "auto_min_area",
    "STATE_FILE",
    "OUTPUT_LIST",
]

STATE_FILE = ".predict_state.json"
OUTPUT_LIST = "output.txt"


def auto_min_area(data_dir: Path, members: list[Member]) -> tuple[int, ...]:
    """Per class, half the smallest area it covers in any label the members trained on.

    The rule needs nothing but the training labels (recorded in each checkpoint's trained_on):
    a class drawn on fewer pixels than half of its smallest labelled appearance is taken to be
    noise. Background gets 0 (never dropped); a class never seen in a label gets 0 too.
    """
    for member in members:
        if not member.trained_on:
            raise InputError(
                "--min-area auto needs checkpoints that record their training labels; give a number",
                member.checkpoint,
            )
    keys = sorted({key for member in members for key in member.trained_on or []})
    classes = members[0].config.num_classes
    never = np.iinfo(np.int64).max
    smallest = np.full(classes, never, dtype=np.int64)
    frames = frame_reader(Path(data_dir))
    for key in keys:
        label = frames.read_label(key)
        counts = np.bincount(label.ravel(), minlength=classes)[:classes]
        present = counts > 0
        smallest[present] = np.minimum(smallest[present], counts[present])
    return (0, *(int(area) // 2 if area != never else 0 for area in smallest[1:]))


def _npy_size() -> int:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH), np.uint8))
    return buffer.tell()


MASK_FILE_BYTES = _npy_size()  # 256,128: header + 400 * 640 bytes


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard expects i/n like 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return index, count


def is_complete_mask(path: Path) -> bool:
    """A mask file written in full (its size is exactly that of a saved (400, 640) uint8 array)."""
    try:
        return path.stat().st_size == MASK_FILE_BYTES
    except OSError:
        return False


@dataclass
class PredictJob:
    """What to predict and where; `keys` is the whole label file, in order (all shards)."""

    data_dir: Path
    keys: list[str]
    save_dir: Path | None = None
    pseudo: PseudoSettings | None = None
    submission: Path | None = None
    shard: tuple[int, int] = (0, 1)
    workers: int = 2  # DataLoader workers decoding the frames
    overwrite: bool = False
    probs_dir: Path | None = None  # a teacher's soft targets (inference/teacher.py)


@dataclass
class RunResult:
    predicted: int  # frames run through the ensemble by this process
    skipped_done: int  # frames of this shard already complete from an earlier run
    output_list: Path | None = None  # output.txt, when every frame of the list is done
    submission: Path | None = None
    manifest: dict[str, Any] | None = None  # pseudo.json content, when every frame is done
    teacher: dict[str, Any] | None = None  # teacher.json content, when every frame is done


# --- output folders: fingerprint, stale content, overwrite --------------------------------------


@dataclass(frozen=True)
class _Folder:
    """An output folder and the files of its kind (deleted by overwrite, signs of foreign content)."""

    path: Path
    kind: str  # "predictions" or "pseudo-labels"
    patterns: tuple[str, ...]
    temp_files: str = "S_*/.*.tmp"  # where a killed write leaves its temp files


def _prediction_folder(path: Path, plain: bool = False) -> _Folder:
    if plain:  # a plain folder's keys are any relative path: left/0001, 0001, a/b/0001
        return _Folder(path, "predictions", ("**/*.npy", OUTPUT_LIST), "**/.*.tmp")
    return _Folder(path, "predictions", ("S_*/[0-9]*.npy", OUTPUT_LIST))


def _pseudo_folder(path: Path) -> _Folder:
    return _Folder(path, "pseudo-labels", ("S_*/label_*.npy", JOURNAL_GLOB, PSEUDO_MANIFEST))


def _probs_folder(path: Path) -> _Folder:
    return _Folder(path, "teacher probabilities", ("S_*/[0-9]*.npz", TEACHER_MANIFEST))


def _fingerprint(job: PredictJob, predictor: Predictor, pseudo: bool, probs: bool = False) -> dict[str, Any]:
    members = predictor.members
    identity: dict[str, Any] = {
        "members": sorted([member.digest, member.weight] for member in members),
        "tta": predictor.tta,
        "data_dir": str(job.data_dir.resolve()),
        # fp16/bf16 and another device give (slightly) other masks: never mixed in one folder.
        "precision": str(predictor.amp_dtype or torch.float32).removeprefix("torch."),
        "device": predictor.device.type,
    }
    if pseudo:
        identity |= {"threshold": job.pseudo.threshold, "min_confident": job.pseudo.min_confident}
    if predictor.min_area is not None and not probs:  # probabilities are taken before it
        identity["min_area"] = list(predictor.min_area)
    return {"identity": identity, "checkpoints": [member.describe() for member in members]}


class PredictState(BaseModel):
    """.predict_state.json: the fingerprint of the ensemble that made a folder's files (_fingerprint)."""

    model_config = ConfigDict(extra="allow")
    identity: dict[str, Any]


def _check_folder(folder: _Folder, fingerprint: dict[str, Any], overwrite: bool) -> None:
    """Refuse (before anything is written) to continue into a folder made by another ensemble."""
    path = folder.path
    if path.exists() and not path.is_dir():
        raise InputError(f"output folder for {folder.kind} is not a directory", path)
    if overwrite or not path.is_dir():
        return
    state_path = path / STATE_FILE
    if state_path.is_file():
        try:
            previous = read_sidecar(state_path, PredictState, STATE_FILE).identity
        except InputError:
            raise InputError(f"unreadable {STATE_FILE}: pass --overwrite to start afresh", path) from None
        if previous != fingerprint["identity"]:
            differing = ", ".join(
                k for k in fingerprint["identity"] if previous.get(k) != fingerprint["identity"][k]
            )
            raise InputError(
                f"holds {folder.kind} of another ensemble (differs in: {differing}); "
                "pass --overwrite to replace them or choose another folder",
                path,
            )
    elif any(next(path.glob(pattern), None) for pattern in folder.patterns):
        raise InputError(
            f"holds {folder.kind} without {STATE_FILE} (made by another tool or run); "
            "pass --overwrite to replace them or choose another folder",
            path,
        )


def _claim_folder(folder: _Folder, fingerprint: dict[str, Any], overwrite: bool) -> None:
    """Create the folder, check it is writable, clear it on overwrite, then record the fingerprint.

    Clearing comes before the new fingerprint, so a run killed while clearing still refuses to
    continue without --overwrite.
    """
    make_output_dir(folder.path)
    if overwrite:
        for pattern in folder.patterns:
            for stale in folder.path.glob(pattern):
                stale.unlink()
    remove_stale_temp_files(folder.path, folder.temp_files)
    try:
        write_text_atomic(folder.path / STATE_FILE, json.dumps(fingerprint, indent=1) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write to the output folder ({exc.strerror})", folder.path) from None


# --- the loop -----------------------------------------------------------------------------------


class _FramesOrError(Dataset):
    """UnlabeledDataset whose unreadable frames come back as an error string, not an exception.

    An exception raised in a DataLoader worker reaches the main process wrapped in the worker's
    traceback text; carrying the message out keeps the user's error one clean line.
    """

    def __init__(self, frames: UnlabeledDataset) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return {**self.frames[index], "error": ""}
        except InputError as exc:
            blank = torch.zeros((1, IMAGE_HEIGHT, IMAGE_WIDTH), dtype=torch.uint8)
            return {"image": blank, "name": self.frames.keys[index], "error": str(exc)}


def _check_images(data_dir: Path, keys: list[str]) -> bool:
    """Every frame's image is there; True for a plain images/ + masks/ folder, False for OpenEDS."""
    if not data_dir.is_dir():  # else the error would name the first frame, not the real problem
        raise InputError("data directory not found", data_dir)
    frames = frame_reader(data_dir)
    for key in keys:
        if not frames.image_path(key).is_file():
            raise InputError("image not found", frames.image_path(key))
    return isinstance(frames, FolderIndex)


def _make_dirs(root: Path, keys: list[str]) -> None:
    for folder in dict.fromkeys((root / key).parent for key in keys):
        folder.mkdir(parents=True, exist_ok=True)


def run_prediction(job: PredictJob, predictor: Predictor, log: Callable[[str], None] = print) -> RunResult:
    """Predict this shard's frames that are not done yet, then finish the outputs if all shards are.

    predictor: the engine and its settings (inference/predictor.py), built once by the caller."""
    members = predictor.members
    if job.save_dir is None and job.pseudo is None and job.probs_dir is None:
        raise InputError("nothing to write: give a save dir, a pseudo-label dir and/or a probabilities dir")
    if job.submission is not None and job.save_dir is None:
        raise InputError("--submission needs --save-dir (it encodes the saved .npy files)")
    index, count = job.shard
    if job.overwrite and count > 1:
        raise InputError(
            "--overwrite with --shard i/n (n > 1) would let shards delete each other's files: "
            "clear the folder once (one run with --overwrite, or rm -r), then start the shards"
        )
    shard_keys = job.keys[index::count]
    plain = _check_images(job.data_dir, shard_keys)
    if plain and (job.pseudo is not None or job.probs_dir is not None):
        raise InputError(
            "pseudo-labels and teacher probabilities are made for data dirs of the OpenEDS layout only, "
            "not a plain images/ + masks/ folder",
            job.data_dir,
        )
    check_fused_views([member.model for member in members], predictor.tta)

    folders: list[tuple[_Folder, dict[str, Any]]] = []
    if job.save_dir is not None:
        folders.append((_prediction_folder(job.save_dir, plain), _fingerprint(job, predictor, pseudo=False)))
    if job.pseudo is not None:
        pseudo_dir = job.pseudo.out_dir
        if pseudo_dir.resolve() == job.data_dir.resolve():
            raise InputError(
                "the pseudo-label dir must not be the data dir (it would overwrite real labels)", pseudo_dir
            )
        if job.save_dir is not None and pseudo_dir.resolve() == job.save_dir.resolve():
            raise InputError("the pseudo-label dir must differ from the save dir", pseudo_dir)
        folders.append((_pseudo_folder(pseudo_dir), _fingerprint(job, predictor, pseudo=True)))
    if job.probs_dir is not None:
        others = [
            path.resolve() for path in (job.data_dir, job.save_dir, job.pseudo and job.pseudo.out_dir) if path
        ]
        if job.probs_dir.resolve() in others:
            raise InputError(
                "the probabilities dir must differ from the data, save and pseudo-label dirs", job.probs_dir
            )
        folders.append((_probs_folder(job.probs_dir), _fingerprint(job, predictor, pseudo=False, probs=True)))
    for folder, fingerprint in folders:  # all checks first: nothing is written if one fails
        _check_folder(folder, fingerprint, job.overwrite)
    for folder, fingerprint in folders:
        _claim_folder(folder, fingerprint, job.overwrite)
    # The outputs that say "every frame is done" go now; _finish writes them again once it is so.
    # A rerun that fails, or an overwrite, must not leave the previous ones claiming the folder.
    finals = [job.save_dir / OUTPUT_LIST] if job.save_dir is not None else []
    finals += [job.submission] if job.submission is not None else []
    finals += [manifest_path(job.pseudo.out_dir)] if job.pseudo is not None else []
    finals += [job.probs_dir / TEACHER_MANIFEST] if job.probs_dir is not None else []
    for final in finals:
        final.unlink(missing_ok=True)

    records = read_journals(job.pseudo.out_dir) if job.pseudo is not None else {}

    def needs_prediction(key: str) -> bool:
        return job.save_dir is not None and not is_complete_mask(job.save_dir / pred_relpath(key))

    def needs_pseudo(key: str) -> bool:
        if job.pseudo is None:
            return False
        record = records.get(key)
        return record is None or (
            record.kept and not is_complete_mask(job.pseudo.out_dir / label_relpath(key))
        )

    def needs_probs(key: str) -> bool:
        return job.probs_dir is not None and not (job.probs_dir / probs_relpath(key)).is_file()

    pending = [key for key in shard_keys if needs_prediction(key) or needs_pseudo(key) or needs_probs(key)]
    done = len(shard_keys) - len(pending)
    shard_note = f" (shard {index}/{count})" if count > 1 else ""
    log(
        f"{len(pending)} frames to predict{shard_note}, {done} already done; {len(members)} models, tta {predictor.tta}"
    )
    if pending:
        _predict_pending(job, predictor, pending, needs_prediction, needs_pseudo, needs_probs)
    result = _finish(job, predictor)
    result.predicted, result.skipped_done = len(pending), done
    return result


def _predict_pending(
    job: PredictJob,
    setup: Predictor,
    pending: list[str],
    needs_prediction: Callable[[str], bool],
    needs_pseudo: Callable[[str], bool],
    needs_probs: Callable[[str], bool],
) -> None:
    predictor = setup.engine
    dataset = _FramesOrError(UnlabeledDataset(job.data_dir, pending))
    loader = DataLoader(
        dataset, batch_size=setup.batch_size, num_workers=job.workers, pin_memory=setup.device.type == "cuda"
    )
    # Which outputs each frame needs is decided before the loop: the checks stat files.
    want_pred = {key for key in pending if needs_prediction(key)}
    want_pseudo = {key for key in pending if needs_pseudo(key)}
    want_probs = {key for key in pending if needs_probs(key)}
    if job.probs_dir is not None:
        _make_dirs(job.probs_dir, sorted(want_probs))
    if job.save_dir is not None:
        _make_dirs(job.save_dir, sorted(want_pred))
    journal = None
    if job.pseudo is not None:
        _make_dirs(job.pseudo.out_dir, sorted(want_pseudo))
        journal = PseudoJournal(job.pseudo.out_dir, job.shard)
    progress = tqdm(
        total=len(pending), desc="predict", unit="frame", mininterval=0.5 if sys.stderr.isatty() else 30
    )
    errors: list[str] = []
    try:
        for batch in loader:
            # A bad frame costs only itself: the batch's good frames are predicted and the
            # remaining batches too, then one error names every bad frame.
            good = [i for i, error in enumerate(batch["error"]) if not error]
            errors += [error for error in batch["error"] if error]
            progress.update(len(batch["error"]) - len(good))
            if not good:
                continue
            names = [batch["name"][i] for i in good]
            images = batch["image"] if len(good) == len(batch["error"]) else batch["image"][good]
            probs = predictor.probabilities(images)
            labels, confidence = predictor.decide(probs)
            for key, frame_probs in zip(names, probs, strict=True):
                if key in want_probs:
                    save_probs(job.probs_dir / probs_relpath(key), quantize_probs(frame_probs))
            if want_pred:
                for key, mask in zip(names, labels.cpu().numpy(), strict=True):
                    if key in want_pred:
                        save_npy_atomic(job.save_dir / pred_relpath(key), mask)
            if journal is not None:
                masks, shares = pseudo_masks(labels, confidence, job.pseudo.threshold)
                for key, mask, share in zip(names, masks.cpu().numpy(), shares.tolist(), strict=True):
                    if key not in want_pseudo:
                        continue
                    kept = share >= job.pseudo.min_confident
                    if kept:
                        save_npy_atomic(job.pseudo.out_dir / label_relpath(key), mask)
                    journal.append(FrameRecord(key, share, kept))
            progress.update(len(names))
    finally:
        progress.close()
        if journal is not None:
            journal.close()
    if len(errors) == 1:
        raise InputError(errors[0])
    if errors:
        shown = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        raise InputError(
            f"{len(errors)} frames could not be predicted (the others were saved): {shown}", job.data_dir
        )


def _finish(job: PredictJob, predictor: Predictor) -> RunResult:
    members = predictor.members
    """Write output.txt / submission / pseudo.json if every frame of the list (all shards) is done."""
    result = RunResult(predicted=0, skipped_done=0)
    if job.save_dir is not None and all(is_complete_mask(job.save_dir / pred_relpath(k)) for k in job.keys):
        result.output_list = job.save_dir / OUTPUT_LIST
        write_sample_list(result.output_list, job.keys, style="pred")
        if job.submission is not None:
            write_submission(job.save_dir, [pred_relpath(key) for key in job.keys], job.submission)
            result.submission = job.submission
    if job.pseudo is not None:
        records = read_journals(job.pseudo.out_dir)
        if all(key in records for key in job.keys):
            labeled: list[str] = []
            if any(member.trained_on is None for member in members):
                labeled = OpenEDSIndex.from_dir(job.data_dir).labeled_keys()
            manifest = pseudo_manifest(
                job.keys,
                records,
                trained_on_union([member.trained_on for member in members], labeled),
                [member.describe() for member in members],
                predictor.tta,
                job.pseudo,
            )
            write_text_atomic(manifest_path(job.pseudo.out_dir), json.dumps(manifest, indent=1) + "\n")
            result.manifest = manifest
    if job.probs_dir is not None and all((job.probs_dir / probs_relpath(key)).is_file() for key in job.keys):
        labeled = []
        if any(member.trained_on is None for member in members):
            labeled = OpenEDSIndex.from_dir(job.data_dir).labeled_keys()
        result.teacher = teacher_manifest(
            job.keys, trained_on_union([member.trained_on for member in members], labeled),
            [member.describe() for member in members], predictor.tta, members[0].config.num_classes,
        )  # fmt: skip
        write_text_atomic(job.probs_dir / TEACHER_MANIFEST, json.dumps(result.teacher, indent=1) + "\n")
    return result
