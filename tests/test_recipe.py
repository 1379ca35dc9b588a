"""The original recipe, exactly: its config means what it meant, its commands and checkpoints work.

The recipe is zeenolife/openeds_2020 (its README's four commands are quoted in README.md, "The original recipe"). Nothing
here downloads: the network is blocked wherever encoder weights are looked up, and the Hugging
Face cache the tests read is one they write themselves.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import safetensors.torch
import segmentation_models_pytorch as smp
import torch
import yaml
from conftest import ROOT, TINY, assert_one_line_error, run_script, write_tiny_dataset

from config.schema import load_config
from dataset.create_kfolds import main as create_kfolds_main
from dataset.openeds import read_image
from models.checkpoint import load_checkpoint, model_from_checkpoint
from models.zoo import build_model
from training.augment import AugmentedDataset, build_train_transform
from utils.errors import InputError

RECIPE_JSON = ROOT / "configs" / "seed-efficientnet-b7.json"

# What the recipe's train.py actually trained with its efficientnet-b7.json, read from its code
# (train.py, dataset/openeds_dataset.py, predict_ensemble.py), not from the config's keys.
RECIPE_EFFECTIVE = {
    "network": "unet",  # smp.Unet(encoder_name=conf["encoder"], classes=conf["num_classes"])
    "encoder": "efficientnet-b7",
    "encoder_weights": "imagenet",  # smp.Unet's default encoder_weights
    "in_channels": 3,  # cv2.imread(path, cv2.IMREAD_COLOR): the gray frame as 3 equal channels
    "num_classes": 4,
    "fp16": False,
    "input.scale": 1.0,  # whole frames, 400 x 640, padded to 416 x 640
    "input.train_crop": None,  # the crop is commented out of create_train_transforms
    "input.normalize.mean": [0.485, 0.456, 0.406],
    "input.normalize.std": [0.229, 0.224, 0.225],
    "optimizer.type": "AdamW",
    "optimizer.batch_size": 6,
    "optimizer.grad_clip": 1.0,  # clip_grad_norm_(..., 1), hard-coded; the config's clip: 3 is never read
    "optimizer.freeze_encoder_epochs": 1,  # --freeze-epochs default 1
    "optimizer.schedule.type": "step",
    "optimizer.schedule.mode": "epoch",
    "optimizer.schedule.epochs": 170,
    "mask_loss.type": "ComboLoss",
    "mask_loss.params.weights": {"dice": 1.0, "focal": 1.0, "bce": 1.0},
}
# create_train_transforms, without the commented-out crop: (transform, p, children).
RECIPE_AUGMENTATIONS = [
    ("HorizontalFlip", 0.5, []),
    ("ImageCompression", 0.1, []),
    ("RandomBrightnessContrast", 0.4, []),
    ("RandomGamma", 0.4, []),
    ("OneOf", 0.2, ["RGBShift", "HueSaturationValue"]),
]


def _value(config: object, dotted: str) -> object:
    for key in dotted.split("."):
        config = getattr(config, key)
    return config.model_dump() if hasattr(config, "model_dump") else config


def test_recipe_json_resolves_to_what_the_recipe_trained() -> None:
    config = load_config(RECIPE_JSON)
    effective = {key: _value(config, key) for key in RECIPE_EFFECTIVE}
    effective["optimizer.schedule.epochs"] = config.optimizer.schedule.epochs
    effective["mask_loss.params.weights"] = config.mask_loss.params.weights.model_dump(exclude_defaults=True)
    assert effective == RECIPE_EFFECTIVE
    assert config.optimizer.schedule.params.steps[0] == (0, 0.003)
    # Its crop and clip keys load unchanged and, as in the recipe, change nothing.
    assert config.unused_recipe_keys() == ["optimizer.clip", "input.crop_height", "input.crop_width"]
    built = build_train_transform(config.input).transforms
    seen = [(type(t).__name__, t.p, [type(c).__name__ for c in getattr(t, "transforms", [])]) for t in built]
    assert seen == RECIPE_AUGMENTATIONS
    defaults = build_train_transform(load_config(TINY, ["input.augmentations=[]"]).input).transforms
    assert defaults == []


def test_our_configs_keep_explicit_keys() -> None:
    for name in ("tiny.yaml", "cpu_fast.yaml"):
        assert "encoder_weights: null" in (ROOT / "configs" / name).read_text(), name
        assert load_config(ROOT / "configs" / name).encoder_weights is None
    assert load_config(TINY).optimizer.grad_clip == 3


class _Frames(torch.utils.data.Dataset):
    def __init__(self) -> None:
        gray = torch.arange(40 * 64, dtype=torch.int32).reshape(1, 40, 64) % 200
        self.item = {"image": gray.to(torch.uint8), "mask": torch.zeros(40, 64, dtype=torch.long)}

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item


def test_colour_augmentations_act_on_the_gray_frame_copied_to_three_channels() -> None:
    config = load_config(RECIPE_JSON, ["input.augmentations=[{name: RGBShift, p: 1.0}]"])
    sample = AugmentedDataset(_Frames(), build_train_transform(config.input), seed=0, channels=3)[(0, 0)]
    image = sample["image"]
    assert image.shape == (3, 40, 64) and image.dtype == torch.uint8
    assert not torch.equal(image[0], image[1])  # the channels are shifted apart, as in the recipe
    gray = AugmentedDataset(_Frames(), build_train_transform(config.input), seed=0, channels=1)[(0, 0)]
    assert gray["image"].shape == (1, 40, 64)
    # The network takes the 3-channel training frame as it is (and the 1-channel copy at inference).
    model = build_model(load_config(TINY, ["in_channels=3"])).eval()
    with torch.no_grad():
        assert model(image[None]).shape == (1, 4, 40, 64)


# ---------------------------------------------------------------- encoder weights

SMP_ENCODER = "mobilenet_v2"  # a small smp encoder whose ImageNet weights live on the Hub
SMP_OVERRIDES = [f"encoder={SMP_ENCODER}", "encoder_weights=imagenet", "in_channels=3"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[object]:
    """Block every connection (recorded) and point the Hugging Face cache at an empty folder."""
    attempts: list[object] = []

    def deny(*args: object, **kwargs: object) -> None:
        attempts.append(args[:1])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", deny)
    monkeypatch.setattr(socket, "getaddrinfo", deny)
    monkeypatch.setattr(socket.socket, "connect", deny)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's retries, at once
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return attempts


def _reference_encoder() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    encoder = smp.encoders.get_encoder(SMP_ENCODER)
    return {k: v.contiguous() for k, v in encoder.state_dict().items()}


def test_named_weights_come_from_the_hugging_face_cache(no_network: list[object]) -> None:
    settings = smp.encoders.encoders[SMP_ENCODER]["pretrained_settings"]["imagenet"]
    folder = huggingface_hub.file_download.repo_folder_name(repo_id=settings["repo_id"], repo_type="model")
    snapshot = Path(huggingface_hub.constants.HF_HUB_CACHE) / folder / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    reference = _reference_encoder()
    safetensors.torch.save_file(reference, snapshot / "model.safetensors")
    model = build_model(load_config(TINY, SMP_OVERRIDES))
    # The network was blocked throughout (huggingface_hub 2.4 still tries a best-effort request for
    # its user-agent registry): the weights can only have come from the cache.
    for key, value in reference.items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


def test_named_weights_offline_and_not_cached_is_one_line_naming_them(no_network: list[object]) -> None:
    with pytest.raises(InputError) as raised:
        build_model(load_config(TINY, SMP_OVERRIDES))
    message = str(raised.value)
    assert no_network, "the Hub was never tried"
    assert "\n" not in message
    for needle in ("smp-hub/mobilenet_v2.imagenet", "'imagenet'", "HF_HOME", ".safetensors", "null"):
        assert needle in message, needle
    with pytest.raises(InputError, match="neither weights smp knows.*imagenet"):
        build_model(load_config(TINY, [*SMP_OVERRIDES[:1], "encoder_weights=instagram"]))


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".safetensors"])
def test_local_weights_files_of_every_kind(tmp_path: Path, suffix: str) -> None:
    reference = _reference_encoder()
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(reference, path)
    else:
        torch.save({"state_dict": {f"module.encoder.{k}": v for k, v in reference.items()}}, path)
    model = build_model(
        load_config(TINY, [f"encoder={SMP_ENCODER}", f"encoder_weights={path}", "in_channels=3"])
    )
    for key, value in reference.items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


# ---------------------------------------------------------------- recipe checkpoints


def _recipe_checkpoint(path: Path, numpy1: bool = False) -> torch.nn.Module:
    """Save a tiny model the way the recipe's train.py saved: DataParallel keys, numpy miou_best."""
    torch.manual_seed(3)
    model = build_model(load_config(TINY)).eval()
    state = {f"module.{key}": value for key, value in model.net.state_dict().items()}
    torch.save({"epoch": 12, "state_dict": state, "miou_best": np.float64(0.9375)}, path)
    if numpy1:  # numpy 1.x, which the recipe ran, pickled the scalar as numpy.core.multiarray.scalar
        with zipfile.ZipFile(path) as source:
            entries = [(info, source.read(info.filename)) for info in source.infolist()]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
            for info, data in entries:
                target.writestr(info, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    return model


@pytest.mark.parametrize("numpy1", [False, True])
def test_recipe_checkpoint_loads_with_only_its_numpy_globals(tmp_path: Path, numpy1: bool) -> None:
    path = tmp_path / "recipe_best_miou.pt"
    model = _recipe_checkpoint(path, numpy1)
    payload = load_checkpoint(path)
    assert payload["epoch"] == 12 and payload["miou_best"] == np.float64(0.9375)
    loaded, _, _ = model_from_checkpoint(path, load_config(TINY))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # Nothing more is allowed: a numpy array, a float32 scalar or a class is still refused unloaded.
    for name, extra in (("array", np.zeros(2)), ("float32", np.float32(1)), ("class", zipfile.ZipFile)):
        other = tmp_path / f"{name}.pt"
        torch.save({"epoch": 1, "state_dict": {}, "extra": extra}, other)
        with pytest.raises(InputError, match="holds a pickled object"):
            load_checkpoint(other)


# ---------------------------------------------------------------- the recipe's README commands

NETWORK_GUARD = """
import socket
def deny(*args, **kwargs):
    raise OSError("network blocked by the test")
socket.create_connection = socket.getaddrinfo = socket.socket.connect = deny
"""


def recipe_command(
    script: str, *args: object, cwd: Path, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python <script> ...` as the recipe's README writes it (the script by path, run as a file)."""
    return run_script(ROOT / script, *args, check=False, threads=1, cwd=cwd, env=env or {})


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 sequences, so the recipe's default 10 folds by sequence exist."""
    return write_tiny_dataset(
        tmp_path_factory.mktemp("recipe") / "data", sequences=10, frames=6, label_every=3
    )


@pytest.mark.slow
def test_the_recipe_readme_commands_run_as_written(recipe_data: Path, tmp_path: Path) -> None:
    data = recipe_data
    # python dataset/create_kfolds.py (the recipe runs the file as a script)
    proc = recipe_command("dataset/create_kfolds.py", "--data-dir", data, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (data / "fold_9_val.txt").is_file()
    # python train.py --config <path_to_config> --data-dir <path_to_data> --gpu <gpu_ids> --fold <fold_id>
    # (tiny.yaml under the name of the shipped ensemble's run, so configs/ensemble.yaml finds it)
    shutil.copy(TINY, tmp_path / "cpu_fast.yaml")
    proc = recipe_command(
        "train.py", "--config", "cpu_fast.yaml", "--data-dir", data, "--gpu", 0, "--fold", 0, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / "cpu_fast" / "fold_0" / "best.pt").is_file()
    if not torch.cuda.is_available():
        notices = [line for line in proc.stderr.splitlines() if "CUDA is not available" in line]
        assert notices == ["note: --gpu 0 given but CUDA is not available; training on the CPU"]
    # python predict_ensemble.py --data-dir <path_to_data> --label-file <path_to_file_with_sample_names>
    #     --save-dir <path_to_save> --gpu <gpu_ids>: the list is found in the data dir, the models
    #     are configs/ensemble.yaml's
    proc = recipe_command(
        "predict_ensemble.py", "--data-dir", data, "--label-file", "fold_0_val.txt", "--save-dir", "preds",
        "--gpu", 0, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    val = (data / "fold_0_val.txt").read_text().split()
    written = (tmp_path / "preds" / "output.txt").read_text().split()
    assert len(written) == len(val) > 0
    # python validate.py --data-dir <path_to_data> --pred-dir <path_to_predictions> --fold <fold_id>
    proc = recipe_command("validate.py", "--data-dir", data, "--pred-dir", "preds", "--fold", 0, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "mIoU" in proc.stdout


@pytest.mark.slow
def test_predict_ensemble_help_names_the_default_models() -> None:
    proc = recipe_command("predict_ensemble.py", "--help", cwd=ROOT)
    assert proc.returncode == 0
    assert "configs/ensemble.yaml" in " ".join(proc.stdout.split())


PACKAGES = (
    "config", "dataset", "losses", "models", "inference", "evaluation", "training", "viz", "utils", "runtime",
    "scripts", "bench", "experiments", "tools",
)  # fmt: skip
RUNNABLE = [
    "dataset/create_kfolds.py",
    "dataset/importers.py",
    "dataset/synthetic",
    "dataset/synthetic/video.py",
    "viz/contact_sheet.py",
    "utils/submission.py",
    "scripts/demo.py",
    "scripts/student.py",
    "scripts/pretrain.py",
    "bench/run_all.py",
    "bench/train.py",
    "bench/infer.py",
    "bench/cpu_infer.py",
    "bench/memory.py",
    "experiments/recipe_search.py",
    "bench/step.py",
    "bench/segment.py",
    "bench/student.py",
    "bench/avx2.py",
    "tools/avx2.py",
    "experiments/transfer.py",
    "experiments/real_eye.py",
    "experiments/leave_one_style_out.py",
    "experiments/own_camera.py",
    "experiments/pupil_confidence.py",
    "experiments/pupil_smoothing.py",
]


def test_every_runnable_module_has_a_main_and_is_listed_here() -> None:
    found = {
        str(path.relative_to(ROOT)).removesuffix("/__main__.py")
        for folder in PACKAGES
        for path in (ROOT / folder).rglob("*.py")
        if 'if __name__ == "__main__"' in path.read_text()
    }
    assert found == set(RUNNABLE)


# One Python runs every file as `python FILE --help` would: sys.path[0] the file's folder (the
# repository root is not on the path), the project's modules dropped between files so each file's
# own imports are tried afresh. Third-party modules (torch) stay loaded: one import, not 25.
RUN_AS_FILES = r"""
import io, json, os, runpy, sys
from contextlib import redirect_stderr, redirect_stdout
root, project, scripts = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3:]
base = [p for p in sys.path if p not in ("", root, os.getcwd())]
results = {}
for script in scripts:
    for name in [m for m in sys.modules if m.split(".")[0] in project]:
        del sys.modules[name]
    path = os.path.join(root, script)
    sys.path[:] = [path if os.path.isdir(path) else os.path.dirname(os.path.realpath(path))] + base
    sys.argv = [path, "--help"]
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    except BaseException as error:
        code = repr(error)
    results[script] = [code, "usage:" in out.getvalue(), err.getvalue()[-500:]]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs_as_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """Every RUNNABLE file's `--help` result: [exit code, printed usage, stderr tail]."""
    project = ",".join((*PACKAGES, *(path.stem for path in ROOT.glob("*.py"))))
    proc = run_script(
        "-c", RUN_AS_FILES, ROOT, project, *RUNNABLE, cwd=tmp_path_factory.mktemp("files"), threads=1
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("script", RUNNABLE)
def test_every_runnable_module_runs_as_a_file(script: str, runs_as_files: dict[str, list]) -> None:
    code, usage, stderr = runs_as_files[script]
    assert code == 0 and usage, (code, stderr)


@pytest.mark.slow
def test_recipe_config_offline_without_weights_is_one_line(recipe_data: Path, tmp_path: Path) -> None:
    """The recipe's JSON as it is, on a machine without the weights and without a network."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    env = {"PYTHONPATH": str(guard), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    if not (recipe_data / "fold_0_val.txt").is_file():
        create_kfolds_main(["--data-dir", str(recipe_data)])
    proc = recipe_command(
        "train.py", "--config", RECIPE_JSON, "--data-dir", recipe_data, "--gpu", 0, "--fold", 0,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert_one_line_error(proc, "smp-hub/efficientnet-b7.imagenet", "HF_HOME", "encoder_weights")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_recipe_checkpoint_predicts_the_class_maps_its_network_computes(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data", sequences=2, frames=4, label_every=2)
    checkpoint = tmp_path / "segmentation_unet_efficientnet-b7_0_best_miou.pt"
    model = _recipe_checkpoint(checkpoint, numpy1=True)
    ensemble = tmp_path / "recipe.yaml"
    ensemble.write_text(yaml.safe_dump({"members": [{"checkpoint": str(checkpoint), "config": str(TINY)}]}))
    frames = ["S_0/label_1.npy", "S_1/label_3.npy"]
    (data / "frames.txt").write_text("\n".join(frames) + "\n")
    proc = recipe_command(
        "predict_ensemble.py", "--data-dir", data, "--label-file", "frames.txt", "--save-dir", "preds",
        "--ensemble", ensemble, "--tta", "none", "--gpu", "cpu", "--workers", 0, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in frames:
        sequence, label = name.split("/")
        number = label.removeprefix("label_").removesuffix(".npy")
        image = torch.from_numpy(read_image(data / sequence / f"{number}.png"))[None, None]
        with torch.no_grad():
            expected = model(image).argmax(1)[0].to(torch.uint8).numpy()
        predicted = np.load(tmp_path / "preds" / sequence / f"{number}.npy")
        assert predicted.shape == (400, 640) and predicted.dtype == np.uint8
        assert (predicted != expected).mean() < 1e-3, name


# ---------------------------------------------------------------- the requirements tell the truth

# Import name -> distribution, where they differ (names compared normalised: lower case, "-" for "_" and ".").
IMPORT_TO_DISTRIBUTION = {
    "cv2": "opencv-python-headless",
    "yaml": "PyYAML",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
}
# Pinned in requirements.txt although no module imports them: what an imported package needs at a
# version that has to match the rest.
COMPANIONS = {
    "torchvision": "timm's and smp's dependency; each release is built for one torch release",
    "tensorboard": "torch.utils.tensorboard (training/run_folder.py) imports it",
    "onnxscript": "torch.onnx's dynamo exporter (export.py) imports it",
}
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)")


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """distribution -> version of a requirements file's own lines; each must be `name==version` (or `-r file`)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        match = PIN.fullmatch(line)
        assert match, f"{path.name}:{number}: {raw!r} is not pinned as name==version"
        name = _distribution(match[1])
        assert name not in pins, f"{path.name}:{number}: {match[1]} pinned twice"
        pins[name] = match[2]
    return pins


def _third_party_imports(files: list[Path], local: set[str]) -> dict[str, set[str]]:
    """distribution -> the files importing it (ast: lazy imports inside functions count too)."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top not in local:
                    distribution = _distribution(IMPORT_TO_DISTRIBUTION.get(top, top))
                    found.setdefault(distribution, set()).add(str(path.relative_to(ROOT)))
    return found


def test_requirements_pin_every_package_the_code_imports_and_dev_tools_apart() -> None:
    packages = sorted(path.parent for path in ROOT.glob("*/__init__.py") if path.parent.name != "tests")
    local = {path.name for path in packages} | {path.stem for path in ROOT.glob("*.py")}
    sources = [*ROOT.glob("*.py"), *(path for package in packages for path in package.rglob("*.py"))]
    code = _third_party_imports(sources, local)
    tests = _third_party_imports(sorted((ROOT / "tests").glob("*.py")), local | {"conftest"})
    runtime = _pins(ROOT / "requirements.txt")
    dev_file = ROOT / "requirements-dev.txt"
    dev = _pins(dev_file)

    unpinned = {name: sorted(files) for name, files in code.items() if name not in runtime}
    assert not unpinned, f"imported by the code but not pinned in requirements.txt: {unpinned}"
    assert set(runtime) - set(code) == {_distribution(name) for name in COMPANIONS}, "pinned but not imported"
    assert "-r requirements.txt" in [line.strip() for line in dev_file.read_text().splitlines()]
    assert {"pytest", "ruff"} <= set(dev) and not {"pytest", "ruff"} & set(runtime)
    assert not set(dev) & set(runtime), "requirements-dev.txt repeats a runtime pin"
    test_only = {name: sorted(files) for name, files in tests.items() if name not in runtime | dev}
    assert not test_only, f"imported by the tests but pinned in neither requirements file: {test_only}"
    assert set(dev) - set(tests) == {"ruff"}, "requirements-dev.txt pins what no test imports"
