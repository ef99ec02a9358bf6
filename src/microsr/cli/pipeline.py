"""Pipeline subcommands: phantom, simulate, prepare, train, predict, evaluate, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import Device, Spacing, command, parse_spacing
from microsr.errors import MicrosrError


@command
def phantom(
    out_volume: Path,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Z Y X voxels")] = (64, 160, 160),
    spacing: Annotated[float, typer.Option(help="voxel size, mm")] = 0.01,
    site: Annotated[str, typer.Option(help="femur | spine")] = "femur",
    seed: int = 0,
) -> None:
    """Write a synthetic trabecular-bone phantom (density in mg HA/cm3)."""
    from microsr.io import write_volume
    from microsr.simulate import make_phantom

    if site not in ("femur", "spine"):
        raise MicrosrError(f"--site {site!r}: use femur or spine")
    typer.echo(
        write_volume(make_phantom(shape, spacing_mm=spacing, site=site, seed=seed), out_volume)
    )


@command
def simulate(
    hr_volume: Path,
    out_volume: Path,
    spacing: Spacing = None,
    factor: Annotated[int, typer.Option(help="LR voxel / HR voxel")] = 2,
    projections_ratio: Annotated[float, typer.Option(help="LR projections / HR projections")] = 0.5,
    photons: Annotated[
        float, typer.Option(help="incident photons per LR detector bin per frame")
    ] = 5000.0,
    frames: Annotated[int, typer.Option(help="frames averaged per projection")] = 1,
    reference_value: Annotated[
        float | None,
        typer.Option(help="grey value with mu = 0.5/mm (default 1000, i.e. mg HA/cm3 data)"),
    ] = None,
    seed: int = 0,
    quick: Annotated[bool, typer.Option(help="Gaussian PSF + block average + noise")] = False,
) -> None:
    """Simulate a low-resolution acquisition of a high-resolution volume."""
    from microsr.io import read_volume, write_volume
    from microsr.simulate import AcquisitionConfig, simulate_acquisition

    opts = {
        "factor": factor,
        "projections_ratio": projections_ratio,
        "photons": photons,
        "frames": frames,
        "seed": seed,
        "quick": quick,
    }
    if reference_value is not None:
        opts["reference_value"] = reference_value
    hr = read_volume(hr_volume, spacing_mm=parse_spacing(spacing))
    lr = simulate_acquisition(hr, AcquisitionConfig(**opts), progress=True)
    typer.echo(write_volume(lr, out_volume))


@command
def prepare(
    manifest: Path,
    out_dir: Path,
    split_seed: Annotated[int, typer.Option(help="seed of the specimen split")] = 0,
    normalize: Annotated[
        str, typer.Option(help="minmax (per slice, the paper) | window")
    ] = "minmax",
    window: Annotated[
        tuple[float, float] | None, typer.Option(help="LOW HIGH for --normalize window")
    ] = None,
    roi: Annotated[int, typer.Option(help="bone-centred ROI side, HR voxels")] = 400,
    splits: Annotated[Path | None, typer.Option(help="your own splits.json")] = None,
    overwrite: bool = False,
) -> None:
    """Check LR/HR pairs, cut, upsample and normalise slice pairs, split specimens."""
    from pydantic import ValidationError

    from microsr.data.normalize import NormalizationConfig
    from microsr.data.prepare import PrepareConfig, prepare_dataset

    try:
        norm = NormalizationConfig(
            mode=normalize, low=window[0] if window else None, high=window[1] if window else None
        )
    except ValidationError as exc:
        raise MicrosrError(f"--normalize/--window: {exc.errors()[0]['msg']}") from None
    cfg = PrepareConfig(roi=roi, normalization=norm, split_seed=split_seed, split_file=splits)
    typer.echo(prepare_dataset(manifest, out_dir, cfg, overwrite=overwrite))


@command
def train(
    dataset_dir: Path,
    run_dir: Path,
    epochs: int = 100,
    max_minutes: float | None = None,
    lr: float = 1e-3,
    loss: Annotated[str, typer.Option(help="bce (paper) | l1 | mse")] = "bce",
    batch_size: int = 8,
    patch: int = 96,
    device: Device = "auto",
    resume: Annotated[bool, typer.Option(help="continue from RUN_DIR/last.ckpt")] = False,
    width: int = 16,
    depth: int = 3,
    seed: int | None = None,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes")] = 0,
    precision: Annotated[str, typer.Option(help="32 | 16-mixed | bf16-mixed")] = "32",
    devices: int = 1,
    num_nodes: int = 1,
) -> None:
    """Train a U-Net on a prepared dataset (writes best.ckpt and last.ckpt)."""
    from pydantic import ValidationError

    from microsr.models.factory import ModelConfig
    from microsr.training.config import TrainConfig
    from microsr.training.train import train as run_train

    try:
        cfg = TrainConfig(
            model=ModelConfig(width=width, depth=depth),
            epochs=epochs,
            max_minutes=max_minutes,
            lr=lr,
            loss=loss,
            batch_size=batch_size,
            patch=patch,
            device=device,
            seed=seed,
            num_workers=workers,
            precision=precision,
            devices=devices,
            num_nodes=num_nodes,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise MicrosrError(f"--{'-'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    result = run_train(dataset_dir, run_dir, cfg, resume=resume)
    typer.echo(f"best: {result.best}\nlast: {result.last}")


@command
def predict(
    checkpoint: Path,
    lr_volume: Path,
    out_volume: Path,
    spacing: Spacing = None,
    device: Device = "auto",
    batch_size: int = 8,
    tile: Annotated[int, typer.Option(help="tile side (HR px) for large slices")] = 512,
) -> None:
    """Super-resolve an LR volume with a trained checkpoint."""
    from microsr.inference.predict import predict_file

    typer.echo(
        predict_file(
            checkpoint,
            lr_volume,
            out_volume,
            spacing_mm=parse_spacing(spacing),
            device=device,
            batch_size=batch_size,
            tile=tile,
        )
    )


@command
def evaluate(
    paths: Annotated[
        list[Path], typer.Argument(help="OUT_DIR with --hr/--lr, or DATASET_DIR RUN_DIR OUT_DIR")
    ],
    hr: Path | None = None,
    lr: Path | None = None,
    sr: Path | None = None,
    spacing: Spacing = None,
    device: Device = "auto",
    split: Annotated[str, typer.Option(help="split of a prepared dataset")] = "test",
) -> None:
    """PSNR/SSIM of bilinear LR and SR against HR (CSV per slice + summary.json)."""
    from microsr.data.normalize import NormalizationConfig
    from microsr.evaluation import (
        evaluate_dataset,
        evaluate_volumes,
        format_summary,
        write_evaluation,
    )
    from microsr.inference.checkpoint import load_checkpoint
    from microsr.io import read_volume
    from microsr.training.device import resolve_device

    sp = parse_spacing(spacing)
    if hr is not None or lr is not None:
        if hr is None or lr is None or len(paths) != 1:
            raise MicrosrError("use: microsr evaluate --hr HR --lr LR [--sr SR] OUT_DIR")
        vols = [read_volume(p, spacing_mm=sp) if p else None for p in (hr, lr, sr)]
        slices = evaluate_volumes(*vols, normalization=NormalizationConfig(), name=Path(lr).stem)
    else:
        if len(paths) != 3:
            raise MicrosrError("use: microsr evaluate DATASET_DIR RUN_DIR|CHECKPOINT OUT_DIR")
        ckpt = paths[1] / "best.ckpt" if paths[1].is_dir() else paths[1]
        loaded = load_checkpoint(ckpt, device=resolve_device(device))
        slices = evaluate_dataset(paths[0], loaded, split=split)
    typer.echo(format_summary(write_evaluation(slices, paths[-1])))


@command
def demo(
    out_dir: Path,
    data: Annotated[Path | None, typer.Option(help="your HR volume instead of phantoms")] = None,
    spacing: Spacing = None,
    minutes: Annotated[float, typer.Option(help="training wall time")] = 3.0,
    seed: int = 0,
) -> None:
    """Phantoms -> simulated LR -> prepare -> train -> predict -> evaluate, in minutes."""
    from microsr.demo import run_demo
    from microsr.evaluation import format_summary

    summary = run_demo(
        out_dir, data=data, spacing_mm=parse_spacing(spacing), minutes=minutes, seed=seed
    )
    typer.echo("\nTest specimens (never seen in training), scored against HR:\n")
    typer.echo(format_summary(summary))
    typer.echo(f"\nmodel: {out_dir / 'best.ckpt'}   summary: {out_dir / 'summary.json'}")
