import json

import pandas as pd
import pytest
import torch

from microsr.checkpoint import read_checkpoint
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.data.splits import read_splits
from microsr.device import resolve_device
from microsr.errors import MicrosrError
from microsr.inference.checkpoint import load_checkpoint
from microsr.models.factory import ModelConfig
from microsr.training import train as train_module
from microsr.training.config import TrainConfig
from microsr.training.losses import compute_loss
from microsr.training.train import COMPLETE, SRDataModule, train, train_or_reuse

TINY = TrainConfig(
    loss="bce",
    model=ModelConfig(width=4, depth=2),
    epochs=2,
    batch_size=4,
    patch=16,
    seed=7,
    device="cpu",
    val_max_slices=2,
)


@pytest.fixture
def dataset(pair_manifest, tmp_path):
    return prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)


def test_train_writes_self_describing_checkpoints_and_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    result = train(dataset, run, TINY, progress=False)
    assert result.best == run / "best.ckpt" and result.last.is_file()
    assert json.loads((run / COMPLETE).read_text())["best"] == str(result.best)  # finished
    ckpt = read_checkpoint(result.last)  # weights_only=True load of a real checkpoint
    meta = ckpt["microsr"]
    assert meta["model_class"] == "UNet" and meta["factor"] == 2
    assert meta["normalization"]["mode"] == "window" and meta["seed"] == 7
    assert meta["format_version"] == 2 and meta["z_grid"] == "hr" and meta["z_factor"] == 2
    assert meta["lr_spacing_mm"] == [0.02] * 3 and meta["hr_spacing_mm"] == [0.01] * 3
    assert meta["units"]["kind"] == "grey"  # the test scans carry no calibration
    info = json.loads((dataset / "dataset.json").read_text())
    assert meta["normalization"] == info["normalization"]  # the dataset's fitted window
    assert meta["train_config"]["lr"] == 1e-3 and meta["train_config"]["loss"] == "bce"
    assert ckpt["epoch"] == 1 and "optimizer_states" in ckpt and "state_dict" in ckpt
    log = pd.read_csv(result.metrics_csv)
    assert {"train_loss", "val_loss", "val_psnr", "val_ssim"} <= set(log.columns)
    with pytest.raises(MicrosrError, match="already holds a run"):
        train(dataset, run, TINY, progress=False)
    train(dataset, run, TINY.model_copy(update={"epochs": 3}), resume=True, progress=False)
    assert read_checkpoint(run / "last.ckpt")["epoch"] == 2
    # The metrics log keeps the epochs before the resume.
    assert sorted(pd.read_csv(run / "logs/metrics.csv")["epoch"].dropna().unique()) == [0, 1, 2]
    loaded = load_checkpoint(run / "best.ckpt")
    assert not loaded.model.training and loaded.factor == 2


def test_seed_is_generated_and_recorded_when_not_given(dataset, tmp_path):
    result = train(
        dataset, tmp_path / "r", TINY.model_copy(update={"seed": None, "epochs": 1}), progress=False
    )
    assert isinstance(result.config.seed, int)
    assert read_checkpoint(result.last)["microsr"]["seed"] == result.config.seed


def test_test_specimens_never_reach_training(dataset):
    dm = SRDataModule(dataset, TINY)
    seen = set(dm.train_dataloader().dataset.pairs.specimens)
    assert seen == set(dm.splits.train) and seen.isdisjoint(dm.splits.test)
    # A tampered splits file that leaks a test specimen into training is refused.
    splits = json.loads((dataset / "splits.json").read_text())
    splits["train"].append(splits["test"][0])
    (dataset / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(
        MicrosrError, match=r"splits\.json: specimen\(s\) .* are in both train and test"
    ):
        SRDataModule(dataset, TINY)
    # the check is a raise, not an assert: it holds under `python -O` too
    code = (
        "import sys; from microsr.training.train import SRDataModule, TrainConfig\n"
        "from microsr.errors import MicrosrError\n"
        "try: SRDataModule(sys.argv[1], TrainConfig())\n"
        "except MicrosrError: sys.exit(3)\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-O", "-c", code, str(dataset)], check=False)
    assert done.returncode == 3


def test_one_rule_says_whether_a_run_is_trained_already(tmp_path, monkeypatch):
    """A run is reused only when :func:`train` finished it (``complete.json``); a killed run
    with a ``best.ckpt`` resumes; a run of another config is refused, whatever its state.
    The study and ``compare`` both ask :func:`train_or_reuse`."""
    calls = []

    def fake_train(dataset_dir, run_dir, config, *, resume, progress):
        calls.append(resume)
        for name in ("best.ckpt", "last.ckpt"):
            (run_dir / name).write_bytes(b"")
        (run_dir / "train_config.json").write_text(config.model_dump_json())
        if len(calls) > 1:  # the first run is killed before it returns
            (run_dir / COMPLETE).write_text(json.dumps({"best": str(run_dir / "best.ckpt")}))
        return train_module.TrainResult(run_dir / "best.ckpt", run_dir / "last.ckpt", None, config)

    monkeypatch.setattr(train_module, "train", fake_train)
    run = tmp_path / "run"
    run.mkdir()
    assert train_or_reuse("ds", run, TINY) == run / "best.ckpt" and calls == [False]
    assert train_or_reuse("ds", run, TINY) == run / "best.ckpt" and calls == [False, True]
    on_gpu = TINY.model_copy(update={"device": "cuda"})  # where it runs is not the run
    assert train_or_reuse("ds", run, on_gpu) == run / "best.ckpt" and calls == [False, True]
    assert train_or_reuse("ds", run, TINY.model_copy(update={"seed": None})) == run / "best.ckpt"
    with pytest.raises(MicrosrError, match="holds a run with another config"):
        train_or_reuse("ds", run, TINY.model_copy(update={"epochs": 5}))
    (run / COMPLETE).unlink()  # a killed run of another config is refused too
    with pytest.raises(MicrosrError, match="holds a run with another config"):
        train_or_reuse("ds", run, TINY.model_copy(update={"seed": 8}))
    assert calls == [False, True]


def test_resume_without_checkpoint_is_an_error(dataset, tmp_path):
    with pytest.raises(MicrosrError, match="nothing to resume"):
        train(dataset, tmp_path / "empty", TINY, resume=True, progress=False)


def test_losses_analytic():
    t = torch.tensor([0.0, 1.0, 0.5])
    logits = torch.tensor([0.0, 0.0, 0.0])  # sigmoid = 0.5
    assert compute_loss(logits, t, "l1").item() == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert compute_loss(logits, t, "mse").item() == pytest.approx((0.25 + 0.25) / 3)
    assert compute_loss(logits, t, "bce").item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(MicrosrError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(MicrosrError, match="unknown device"):
        resolve_device("tpu")


def test_evaluate_dataset_with_a_2_5d_model(dataset, tmp_path):
    from microsr.evaluation import evaluate_dataset

    cfg = TINY.model_copy(
        update={
            "epochs": 1,
            "model": ModelConfig(name="unet_residual", width=4, depth=2, in_channels=3),
        }
    )
    loaded = load_checkpoint(train(dataset, tmp_path / "r25", cfg, progress=False).last)
    assert loaded.context_slices == 1
    results = evaluate_dataset(dataset, loaded)
    n_test = len(read_splits(dataset / "splits.json").test)
    df = pd.concat([r.slices for r in results])
    assert len(df) == 8 * n_test and df.psnr_sr.notna().all() and (df.ssim_sr <= 1).all()


def test_default_is_the_compare_winner_and_paper_preset_is_available(dataset, tmp_path):
    from typer.testing import CliRunner

    from microsr.cli import app
    from microsr.training.config import DEFAULT_MODEL, PAPER_MODEL

    default = TrainConfig()
    assert default.model == DEFAULT_MODEL and default.loss == "l1_ssim"
    assert default.structure_weight == 0.5  # the compare winner on morphometry (README)
    assert (DEFAULT_MODEL.name, DEFAULT_MODEL.context_slices) == ("unet_residual", 1)
    assert (PAPER_MODEL.name, PAPER_MODEL.in_channels) == ("unet", 1)
    assert (default.lr, default.epochs) == (1e-3, 100)  # the paper's Adam schedule
    args = [
        "train",
        str(dataset),
        str(tmp_path / "p"),
        "--paper",
        "--epochs",
        "1",
        "--width",
        "4",
        "--depth",
        "2",
        "--patch",
        "16",
        "--device",
        "cpu",
        "--seed",
        "0",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    meta = read_checkpoint(tmp_path / "p/last.ckpt")["microsr"]
    assert meta["model_config"]["name"] == "unet" and meta["model_config"]["in_channels"] == 1
    assert meta["train_config"]["loss"] == "bce" and meta["train_config"]["structure_weight"] == 0


def test_channels_last_training_changes_the_layout_not_the_model():
    from microsr.training.module import SRModule

    model = ModelConfig(name="unet_residual", width=4, depth=2, in_channels=3)
    data = {"factor": 2, "z_factor": 2, "normalization": {"mode": "minmax"}}
    fast, plain = (
        SRModule(
            TrainConfig(model=model, channels_last=cl, structure_weight=0).model_dump(mode="json"),
            data,
        )
        for cl in (True, False)
    )
    plain.model.load_state_dict(fast.model.state_dict())
    convs = [m.weight for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 20)
    for m in (fast, plain):
        torch.nn.init.normal_(
            m.model.body.head.weight, std=0.1, generator=torch.Generator().manual_seed(1)
        )
    out_fast, out_plain = fast(x), plain(x)
    torch.testing.assert_close(out_fast, out_plain, atol=1e-5, rtol=1e-4)
    out_fast.square().mean().backward()
    out_plain.square().mean().backward()
    for a, b in zip(fast.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-3)
