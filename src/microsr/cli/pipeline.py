"""Pipeline subcommands: prepare, train, predict, evaluate, demo."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import (
    Device,
    Grey,
    Mgha,
    Otsu,
    Overwrite,
    Spacing,
    Threads,
    command,
    config_options,
    given_values,
    morph_config,
    option_errors,
    parse_pair,
    parse_spacing,
    use_threads,
)
from microsr.errors import MicrosrError
from microsr.training.config import DEFAULT_MODEL, TrainConfig


@command
def prepare(
    manifest: Path,
    out_dir: Path,
    split_seed: Annotated[int, typer.Option(help="seed of the specimen split")] = 0,
    normalize: Annotated[
        str, typer.Option(help="window (one intensity window, SR in HR units) | minmax (paper)")
    ] = "window",
    window: Annotated[
        tuple[float, float] | None,
        typer.Option(help="fixed HR window LOW HIGH (default: fitted on the training specimens)"),
    ] = None,
    lr_window: Annotated[
        str, typer.Option(help="same (LR in HR units) | fit (LR's own fitted window) | LOW,HIGH")
    ] = "same",
    roi: Annotated[int, typer.Option(help="bone-centred ROI side, HR voxels")] = 400,
    splits: Annotated[Path | None, typer.Option(help="your own splits.json")] = None,
    overwrite: Overwrite = False,
    register: Annotated[
        bool, typer.Option(help="rigidly register each LR scan onto its HR scan first")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="allowed LR/HR misalignment, LR voxels (refused beyond)")
    ] = 1.0,
    units: Annotated[
        str, typer.Option(help="native | mgha: convert to mg HA/cm3 before pairing")
    ] = "native",
    randomize: Annotated[
        bool, typer.Option(help="rows without lr_path: a randomised acquisition per specimen")
    ] = False,
    ranges: Annotated[
        Path | None, typer.Option(help="JSON of AcquisitionRanges for --randomize")
    ] = None,
    simulate_seed: Annotated[
        int, typer.Option(help="seed of the simulated LR scans (per specimen)")
    ] = 0,
    simulate_factor: Annotated[
        int | None,
        typer.Option(help="LR / HR voxel of simulated scans (default 2, or --acquisition's)"),
    ] = None,
    draws: Annotated[
        int,
        typer.Option(
            help="simulated LR scans per training specimen (with --randomize: acquisitions)"
        ),
    ] = 1,
    paper: Annotated[
        bool, typer.Option("--paper", help="the paper's per-slice min-max (= --normalize minmax)")
    ] = False,
    acquisition: Annotated[
        Path | None,
        typer.Option(
            help="rows without lr_path: simulate with this acquisition file (microsr "
            "fit-acquisition); with --randomize, a draw within its uncertainty per specimen"
        ),
    ] = None,
    threads: Threads = None,
) -> None:
    """Check LR/HR pairs, pair every HR slice with LR, fit the intensity window, split.

    Rows with an empty lr_path get an LR scan simulated from their HR scan."""
    from microsr import api
    from microsr.cli._simulate import simulation_config
    from microsr.data.prepare import PrepareConfig

    sim = simulation_config(simulate_factor, randomize, ranges, simulate_seed, draws, acquisition)
    normalize = "minmax" if paper else normalize

    use_threads(threads)
    lr_win = lr_window if lr_window in ("same", "fit") else parse_pair(lr_window, "--lr-window")
    with option_errors():
        cfg = PrepareConfig(
            roi=roi, normalize=normalize, window=window, lr_window=lr_win, split_seed=split_seed,
            split_file=splits, register_lr=register, tolerance_lr_voxels=tolerance, units=units,
            simulation=sim,
        )  # fmt: skip
    typer.echo(api.prepare_dataset(manifest, out_dir, cfg, overwrite=overwrite))


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        help="TrainConfig as YAML or JSON (e.g. a run's train_config.json); the options "
        "given beside it override its values"
    ),
]


@command
@config_options(TrainConfig, skip=("model", "init"))
def train(
    ctx: typer.Context,
    dataset_dir: Path,
    run_dir: Path,
    config: ConfigFile = None,
    model: Annotated[
        str, typer.Option(help="network: unet_residual | unet (paper) | rcan; microsr compare")
    ] = DEFAULT_MODEL.name,
    width: Annotated[int, typer.Option(help="network: channels at the first level")] = (
        DEFAULT_MODEL.width
    ),
    depth: Annotated[int, typer.Option(help="network: down-sampling steps (rcan: groups)")] = (
        DEFAULT_MODEL.depth
    ),
    context: Annotated[
        int, typer.Option(help="network, 2.5D: neighbouring LR slices each side (paper: 0)")
    ] = DEFAULT_MODEL.context_slices,
    paper: Annotated[
        bool,
        typer.Option(
            help="the paper's U-Net + BCE, single slices, no structure term (--model unet "
            "--loss bce --context 0 --structure-weight 0)"
        ),
    ] = False,
    init: Annotated[
        Path | None, typer.Option(help=TrainConfig.model_fields["init"].description)
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from RUN_DIR/last.ckpt")] = False,
    threads: Threads = None,
    **fields,
) -> None:
    """Train a model on a prepared dataset (writes best.ckpt and last.ckpt); --init CKPT
    fine-tunes a trained model. Every TrainConfig field is an option; --config FILE sets
    them from a file."""
    import torch

    from microsr import api

    network = _network(ctx, model, width, depth, context, paper, init)
    given = given_values(ctx, fields) | ({"init": str(init)} if init is not None else {})
    if paper:
        given |= {"loss": "bce", "structure_weight": 0.0}
    with option_errors():
        cfg = api.train_config(config, **given, **({"model": network} if network else {}))
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    cpu_ranks = cfg.devices if on_cpu else 1  # CPU DDP: the ranks share this machine's CPUs
    use_threads(threads, io_threads=cfg.num_workers, ranks=cpu_ranks)
    result = api.train(dataset_dir, run_dir, cfg, resume=resume)
    typer.echo(f"best: {result.best}\nlast: {result.last}")


def _network(ctx, model: str, width: int, depth: int, context: int, paper: bool, init):
    """The network options given on the command line, as ModelConfig fields (a mapping that
    completes the config file's network); with --init, the checkpoint's network (refusing
    given options that describe another); None if neither."""
    from microsr.models.config import ModelConfig
    from microsr.training.config import PAPER_MODEL

    names = typing.get_args(ModelConfig.model_fields["name"].annotation)
    if model not in names:
        raise MicrosrError(f"--model {model!r}: use one of {', '.join(names)}")
    if paper:
        model, context = PAPER_MODEL.name, 0
    values = {"name": model, "width": width, "depth": depth, "in_channels": 2 * context + 1}
    options = {"model": "name", "width": "width", "depth": "depth", "context": "in_channels"}
    given = given_values(ctx, {"model": model, "width": width, "depth": depth,
                               "context": context, "paper": paper})  # fmt: skip
    if init is not None:
        from microsr.cli._finetune import init_network

        with option_errors():
            return init_network(ctx, init, ModelConfig(**values))
    fields = {options[o] for o in given if o in options} | (
        {"name", "in_channels"} if paper else set()
    )
    return {f: values[f] for f in fields} or None


@command
def predict(
    checkpoint: Path,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="LR_VOLUME OUT_VOLUME, or LR volumes with --out-dir"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="batch: write each input here, under its own name")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="batch: CSV with columns input,output[,spacing_mm]")
    ] = None,
    out_suffix: Annotated[
        str | None, typer.Option(help="batch with --out-dir: output format, e.g. .mha")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="replace existing outputs (batch: redo them; default: skip)")
    ] = False,
    spacing: Spacing = None,
    device: Device = "auto",
    z_grid: Annotated[
        str, typer.Option(help="auto (the checkpoint's) | hr (every HR slice) | lr (LR slices)")
    ] = "auto",
    batch_size: Annotated[
        int | None, typer.Option(help="slices per batch (default: 8 on CUDA, 1 on CPU)")
    ] = None,
    tile: Annotated[int, typer.Option(help="tile side (HR px) for large slices")] = 512,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 on CUDA and on CPUs with bf16 instructions, else fp32) | 32 | bf16 | 16"
        ),
    ] = "auto",
    channels_last: Annotated[
        bool, typer.Option(help="channels-last memory layout (measured faster; same values)")
    ] = True,
    compile: Annotated[bool, typer.Option(help="torch.compile the model")] = False,
    tta: Annotated[bool, typer.Option(help="average 8 flips/rotations (8x slower)")] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            help="batch: do only part I/N of the jobs (0-based I, e.g. 0/4..3/4); default: "
            "from SLURM_ARRAY_TASK_ID and the array's size when set, else all (0/1)"
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            help="split ONE volume over Dask workers into OUT.zarr: local:N (N worker "
            "processes here) or a scheduler address (e.g. from dask-jobqueue); resumable"
        ),
    ] = None,
    block_slices: Annotated[
        int, typer.Option(help="--dask: output slices per task (a multiple of 32)")
    ] = 64,
    force: Annotated[
        bool,
        typer.Option(
            help="run an input already at or finer than the model's HR voxel, or in units "
            "that do not convert into the model's (refused otherwise)"
        ),
    ] = False,
    keep_factors: Annotated[
        bool,
        typer.Option(
            help="upsample by the model's trained factors from the input's own voxel size "
            "(a transfer across physical scales, warned) instead of aiming at its HR voxel"
        ),
    ] = False,
    input_units: Annotated[
        str,
        typer.Option(
            help="auto (the input's calibration) | mgha (its values are mg HA/cm3) | model "
            "(already in the model's units)"
        ),
    ] = "auto",
    output_units: Annotated[
        str, typer.Option(help="input (its own units and calibration) | mgha (mg HA/cm3)")
    ] = "input",
    threads: Threads = None,
) -> None:
    """Super-resolve an LR volume, or many (--out-dir / --manifest), with a checkpoint.

    Each axis is upsampled to the model's HR voxel size from the input's own voxel size
    (--keep-factors: by the trained factors)."""
    from microsr import api
    from microsr.inference.runner import PredictOptions
    from microsr.runtime import IO_THREADS

    use_threads(threads, io_threads=IO_THREADS)
    with option_errors():
        opts = PredictOptions(
            batch_size=batch_size, tile=tile, precision=precision, channels_last=channels_last,
            compile=compile, tta=tta, z_grid=z_grid, force=force, keep_factors=keep_factors,
            input_units=input_units, output_units=output_units,
        )  # fmt: skip
    sp = parse_spacing(spacing)
    if manifest is None and out_dir is None:
        if len(paths or []) != 2:
            raise MicrosrError(
                "use: microsr predict CKPT LR OUT, CKPT LR... --out-dir DIR, or CKPT --manifest CSV"
            )
        if shard is not None:
            raise MicrosrError("--shard splits a batch (--out-dir or --manifest)")
        lr, out = paths  # type: ignore[misc]
        typer.echo(
            api.predict_file(checkpoint, lr, out, spacing_mm=sp, device=device, options=opts,
                             overwrite=overwrite, dask=_dask_config(dask, block_slices))
        )  # fmt: skip
        return
    if dask is not None:
        raise MicrosrError("--dask splits one volume: use microsr predict CKPT LR OUT.zarr --dask")
    done = api.predict_batch(
        checkpoint, paths or [], out_dir=out_dir, manifest=manifest, out_suffix=out_suffix,
        spacing_mm=sp, shard=shard, device=device, options=opts, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(
        f"written: {len(done['written'])}  skipped (already complete): {len(done['skipped'])}"
    )


def _dask_config(scheduler: str | None, block_slices: int):
    """``--dask`` and ``--block-slices`` as a DaskConfig (None without ``--dask``)."""
    if scheduler is None:
        return None
    from microsr.inference.distributed import DaskConfig

    with option_errors():
        return DaskConfig(scheduler=scheduler, block_slices=block_slices)


@command
def evaluate(
    paths: Annotated[
        list[Path], typer.Argument(help="OUT_DIR with --hr/--lr, or DATASET_DIR RUN_DIR OUT_DIR")
    ],
    hr: Annotated[Path | None, typer.Option(help="HR volume")] = None,
    lr: Annotated[Path | None, typer.Option(help="LR volume")] = None,
    sr: Annotated[Path | None, typer.Option(help="SR volume (from predict)")] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="binary bone mask on the HR grid: score LR, SR and HR against it"),
    ] = None,
    spacing: Spacing = None,
    device: Device = "auto",
    split: Annotated[str, typer.Option(help="split of a prepared dataset")] = "test",
    scale: Annotated[
        str, typer.Option(help="PSNR/SSIM on one intensity window | minmax (per slice, paper)")
    ] = "window",
    threshold_mgha: Mgha = None,
    threshold: Grey = None,
    otsu: Otsu = False,
    no_3d: Annotated[bool, typer.Option("--no-3d", help="skip the 3D morphometry")] = False,
    threads: Threads = None,
) -> None:
    """PSNR/SSIM, BA/TA, intensity bias and 3D morphometry of LR and SR against HR."""
    from microsr import api
    from microsr.evaluation import ScoreConfig, format_summary

    use_threads(threads)
    morph = morph_config(threshold_mgha, threshold, None, otsu)
    with option_errors():
        cfg = ScoreConfig(
            scale=scale, features_3d=not no_3d, **({"morphometry": morph} if morph else {})
        )
    if hr is not None or lr is not None:
        if hr is None or lr is None or len(paths) != 1:
            raise MicrosrError("use: microsr evaluate --hr HR --lr LR [--sr SR] OUT_DIR")
        results = [api.evaluate(hr, lr, sr, spacing_mm=parse_spacing(spacing), config=cfg,
                                truth=truth)]  # fmt: skip
    else:
        if len(paths) != 3 or truth is not None:
            raise MicrosrError(
                "use: microsr evaluate DATASET_DIR RUN_DIR|CHECKPOINT OUT_DIR "
                "(--truth goes with --hr/--lr; a study reads the manifest's truth_path)"
            )
        results = api.evaluate_dataset(paths[0], paths[1], split=split, device=device, config=cfg)
    typer.echo(format_summary(api.write_evaluation(results, paths[-1])))


@command
def demo(
    out_dir: Path,
    data: Annotated[Path | None, typer.Option(help="your HR volume instead of phantoms")] = None,
    spacing: Spacing = None,
    minutes: Annotated[float, typer.Option(help="training wall time")] = 3.0,
    seed: int = 0,
    randomize: Annotated[
        bool,
        typer.Option(
            help="a randomised acquisition per specimen (default ranges; with --acquisition: "
            "within its uncertainty)"
        ),
    ] = False,
    acquisition: Annotated[
        Path | None,
        typer.Option(help="simulate the LR scans with this acquisition file (fit-acquisition)"),
    ] = None,
    threads: Threads = None,
) -> None:
    """Phantoms -> simulated LR -> prepare -> train -> predict -> evaluate, in minutes."""
    from microsr.cli._simulate import acquisition_file
    from microsr.demo import run_demo
    from microsr.evaluation import format_summary

    use_threads(threads)
    file = None if acquisition is None else acquisition_file(acquisition, randomize, None)
    summary = run_demo(
        out_dir, data=data, spacing_mm=parse_spacing(spacing), minutes=minutes, seed=seed,
        randomize=randomize, acquisition=file,
    )  # fmt: skip
    typer.echo("\nTest specimens (never seen in training), scored against HR:\n")
    typer.echo(format_summary(summary))
    typer.echo(f"\nmodel: {out_dir / 'best.ckpt'}   summary: {out_dir / 'summary.json'}")
