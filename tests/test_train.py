"""train.py end to end on tiny data: artifacts, learning, exact resume, config errors, torchrun."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, assert_one_line_error, run_script

from config.schema import load_config
from dataset.create_kfolds import main as create_kfolds_main
from models.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.fixture
def fold_data(tiny_data: Path) -> Path:
    create_kfolds_main(["--data-dir", str(tiny_data), "--folds", "2"])
    return tiny_data


def train(
    data: Path, out: Path, *extra: object, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess:
    return run_script(
        "train.py",
        "--config",
        TINY,
        "--data-dir",
        data,
        "--fold",
        0,
        "--output-dir",
        out,
        *extra,
        check=check,
        **kwargs,
    )


def history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_short_run_learns_and_writes_every_artifact(fold_data: Path, tmp_path: Path) -> None:
    proc = train(fold_data, tmp_path / "runs", "--epochs", 4)
    run = tmp_path / "runs" / "tiny" / "fold_0"
    # What the machine chose, and after the first epoch the speed and the time left.
    assert "precision: " in proc.stdout and "channels_last: " in proc.stdout
    speed = [line for line in proc.stdout.splitlines() if line.startswith("speed: ")]
    assert len(speed) == 1 and "min left for this fold (3 epochs" in speed[0], proc.stdout
    for name in ("best.pt", "last.pt", "config.yaml", "history.csv", "progress.png"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = history(run / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    assert 0.0 <= float(rows[-1]["val_miou"]) <= 1.0
    payload = load_checkpoint(run / "last.pt")
    assert payload["epoch"] == 4
    assert payload["best_miou"] == pytest.approx(max(float(r["val_miou"]) for r in rows), abs=1e-6)
    assert set(payload["trained_on"]) <= {f"S_{s}/{n}" for s in range(4) for n in range(12)}
    # The checkpoint alone rebuilds its model; the saved config equals the resolved one.
    model, config, _ = model_from_checkpoint(run / "best.pt")
    assert config == load_config(run / "config.yaml")
    assert model(torch.zeros(1, 1, 400, 640, dtype=torch.uint8)).shape == (1, 4, 400, 640)


@pytest.mark.slow
def test_a_run_with_dataloader_workers_exits_when_done(fold_data: Path, tmp_path: Path) -> None:
    # Persistent workers ignore SIGTERM (training/shutdown.py); left to interpreter exit, which
    # stops them with SIGTERM, the finished run would wait on them forever.
    proc = train(fold_data, tmp_path / "runs", "--epochs", 1, "--workers", 1, timeout=120)
    assert "done: best val mIoU" in proc.stdout


@pytest.mark.slow
def test_same_seed_gives_same_checkpoint(fold_data: Path, tmp_path: Path) -> None:
    train(fold_data, tmp_path / "a", "--epochs", 1)
    train(fold_data, tmp_path / "b", "--epochs", 1)
    a, b = weights(tmp_path / "a/tiny/fold_0/last.pt"), weights(tmp_path / "b/tiny/fold_0/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recipe_json_loads_unchanged_and_builds_the_recipe_model() -> None:
    config = load_config(ROOT / "configs" / "seed-efficientnet-b7.json")
    assert (config.network, config.encoder, config.num_classes) == ("unet", "efficientnet-b7", 4)
    assert (
        config.optimizer.batch_size == 6
        and config.optimizer.type == "AdamW"
        and config.optimizer.grad_clip == 1
    )
    assert config.optimizer.schedule.params.steps[0] == (0, 0.003)
    assert config.mask_loss.params.weights.model_dump(exclude_defaults=True) == {
        "dice": 1,
        "focal": 1,
        "bce": 1,
    }
    from models.zoo import build_model

    model = build_model(config, pretrained=False)  # its ImageNet weights: tests/test_recipe.py
    assert type(model.net).__name__ == "Unet"
    assert type(model.encoder).__name__ == "EfficientNetEncoder"
    assert model.net.segmentation_head[0].out_channels == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optimizer.bogus=1", "unknown key 'optimizer.bogus'"),
        ("optimizer.batch_size=abc", "'optimizer.batch_size'"),
        ("network=notanet", "'network'"),
    ],
)
def test_bad_config_is_a_one_line_error(fold_data: Path, tmp_path: Path, override: str, needle: str) -> None:
    proc = train(fold_data, tmp_path / "runs", "--set", override, check=False)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_unknown_key_in_config_file_names_file_and_key(fold_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text() + "\nlearning_rat: 0.1\n")
    proc = run_script(
        "train.py",
        "--config",
        bad,
        "--data-dir",
        fold_data,
        "--fold",
        0,
        "--output-dir",
        tmp_path / "r",
        check=False,
    )
    assert_one_line_error(proc, str(bad), "unknown key 'learning_rat'")


# Runs train.main under torchrun and, on each rank, records the sample indices its sampler handed
# out and the final parameters of its model copy, which only rank 0 would otherwise write.
DDP_PROBE = """
import os, sys, torch
sys.path.insert(0, {root!r})
import train
from training.data import EpochSampler

drawn, models = [], []
iterate = EpochSampler.__iter__
def recording_iter(self):
    for item in iterate(self):
        drawn.append(item)
        yield item
EpochSampler.__iter__ = recording_iter
build = train.build_model
def keep(*args, **kwargs):
    models.append(build(*args, **kwargs))
    return models[-1]
train.build_model = keep
train.main(sys.argv[1:])
params = {{name: p.detach().clone() for name, p in models[0].named_parameters()}}
torch.save({{"drawn": drawn, "params": params}}, {out!r} + f"/rank{{os.environ['RANK']}}.pt")
"""


@pytest.mark.slow
def test_torchrun_two_gloo_processes(fold_data: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(DDP_PROBE.format(root=str(ROOT), out=str(tmp_path)))
    run_script(
        "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", probe,
        "--config", TINY, "--data-dir", fold_data, "--fold", 0, "--output-dir", tmp_path / "ddp", "--epochs", 2,
    )  # fmt: skip
    run = tmp_path / "ddp" / "tiny" / "fold_0"
    _, _, payload = model_from_checkpoint(run / "last.pt")
    assert payload["epoch"] == 2
    assert len(history(run / "history.csv")) == 2  # rank 0 alone writes
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    # Both ranks end with the same weights, and those are the ones rank 0 saved.
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name
        assert torch.equal(value, payload["model"][name]), name
    # Each epoch, the ranks drew disjoint samples that together cover the fold's training frames.
    n_train = len((fold_data / "fold_0_train.txt").read_text().split())
    for epoch in (0, 1):
        per_rank = [{index for e, index in rank["drawn"] if e == epoch} for rank in ranks]
        assert per_rank[0] and not per_rank[0] & per_rank[1], epoch
        assert per_rank[0] | per_rank[1] == set(range(n_train)), epoch


@pytest.mark.slow
def test_train_consumes_pseudo_labels_under_the_leakage_rule(fold_data: Path, tmp_path: Path) -> None:
    import json

    import numpy as np

    from dataset.openeds import OpenEDSIndex, label_relpath, parse_sample_name, read_sample_list

    index = OpenEDSIndex.from_dir(fold_data)
    val = read_sample_list(fold_data / "fold_0_val.txt")
    unlabeled = index.unlabeled_keys()
    pseudo = tmp_path / "pseudo"
    for key in unlabeled:
        mask = np.full((400, 640), 255, np.uint8)
        mask[100:300, 200:400] = 1
        (pseudo / label_relpath(key)).parent.mkdir(parents=True, exist_ok=True)
        np.save(pseudo / label_relpath(key), mask)
    # The producing models saw one val label: its sequence's pseudo-labels must be dropped.
    leaked = parse_sample_name(val[0])[0]
    manifest = {"keys": unlabeled, "trained_on": [val[0], *read_sample_list(fold_data / "fold_0_train.txt")]}
    (pseudo / "pseudo.json").write_text(json.dumps(manifest))
    expected = [k for k in unlabeled if parse_sample_name(k)[0] != leaked]
    out = train(
        fold_data, tmp_path / "runs", "--epochs", 1, "--pseudo-dir", pseudo, "--set", "pseudo.weight=0.5"
    )
    assert f"+ {len(expected)} pseudo-labelled frames" in out.stdout
    payload = load_checkpoint(tmp_path / "runs" / "tiny" / "fold_0" / "last.pt")
    assert val[0] in payload["trained_on"]  # inherited from the pseudo-labels' producers


@pytest.mark.slow
def test_an_existing_run_is_never_overwritten_or_resumed_with_another_recipe(
    fold_data: Path, tmp_path: Path
) -> None:
    train(fold_data, tmp_path / "runs", "--epochs", 1)
    last = tmp_path / "runs" / "tiny" / "fold_0" / "last.pt"
    before = last.read_bytes()
    # Without --resume: refused, the run is kept.
    assert_one_line_error(
        train(fold_data, tmp_path / "runs", "--epochs", 1, check=False), "--resume auto continues it"
    )
    # With --resume but another learning rate: refused, naming the key and both values.
    changed = train(fold_data, tmp_path / "runs", "--epochs", 2, "--resume", "auto",
                    "--set", "optimizer.learning_rate=0.01", check=False)  # fmt: skip
    assert_one_line_error(changed, "last.pt", "optimizer.learning_rate: 0.003 -> 0.01")
    assert last.read_bytes() == before
    # More epochs is a continuation, not another recipe.
    assert "resumed" in train(fold_data, tmp_path / "runs", "--epochs", 2, "--resume", "auto").stdout
