"""Data subcommands: phantom and simulate (an HR volume and its simulated LR scan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from microsr.cli._app import Overwrite, Spacing, command, option_errors, parse_spacing
from microsr.cli._simulate import maybe_randomize, parse_reference, parse_shift
from microsr.errors import MicrosrError


@command
def phantom(
    out_volume: Path,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Z Y X voxels")] = (64, 160, 160),
    spacing: Annotated[
        float | None,
        typer.Option(help="voxel size, mm (default 0.01; --from-mask: the mask's own)"),
    ] = None,
    site: Annotated[str, typer.Option(help="femur | spine")] = "femur",
    from_mask: Annotated[
        Path | None,
        typer.Option(
            help="binary bone mask (0/1 or 0/255): a grey HR scan of its real architecture "
            "with synthetic intensities (partial volume, TMD, marrow, HR blur and noise)"
        ),
    ] = None,
    crop: Annotated[
        int | None, typer.Option(help="--from-mask: keep the central CROP^3 voxels")
    ] = None,
    seed: int = 0,
    overwrite: Overwrite = False,
) -> None:
    """Write a synthetic trabecular-bone phantom, or a grey scan of a mask (mg HA/cm3)."""
    from microsr.io import check_volume_output, write_volume
    from microsr.simulate import grey_from_mask, make_phantom, read_mask
    from microsr.simulate.from_mask import centre_crop

    if site not in ("femur", "spine"):
        raise MicrosrError(f"--site {site!r}: use femur or spine")
    if crop is not None and crop < 8:
        raise MicrosrError(f"--crop {crop}: use 8 voxels or more")
    check_volume_output(out_volume, inputs=[from_mask] if from_mask else [], overwrite=overwrite)
    if from_mask is None:
        volume = make_phantom(shape, spacing_mm=spacing or 0.01, site=site, seed=seed)
    else:
        mask, mask_spacing = read_mask(from_mask, spacing_mm=spacing)
        mask = centre_crop(mask, crop)
        volume = grey_from_mask(mask, mask_spacing, seed=seed, source=str(from_mask))
    typer.echo(write_volume(volume, out_volume, overwrite=overwrite))


@command
def simulate(
    ctx: typer.Context,
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
        str,
        typer.Option(
            help="auto (calibrated: real attenuation; else the 99.5th percentile = 1000 mg "
            "HA/cm3 bone) | the grey value with attenuation --mu-bone"
        ),
    ] = "auto",
    mu_bone: Annotated[
        float, typer.Option(help="attenuation of 1000 mg HA/cm3 bone at the effective energy, 1/mm")
    ] = 0.5,
    filter: Annotated[
        str, typer.Option(help="FBP filter: ramp | shepp-logan | cosine | hamming | hann")
    ] = "ramp",
    psf_sigma: Annotated[
        float, typer.Option(help="detector / focal-spot blur sigma, LR detector bins")
    ] = 0.0,
    shift: Annotated[
        str | None, typer.Option(help="LR/HR misregistration Z,Y,X in HR voxels, e.g. 0,0.5,-0.3")
    ] = None,
    ring_strength: Annotated[
        float, typer.Option(help="ring artefacts: relative gain error per detector bin")
    ] = 0.0,
    randomize: Annotated[
        bool, typer.Option(help="draw photons, frames, projections, filter, PSF, shift, rings")
    ] = False,
    ranges: Annotated[
        Path | None, typer.Option(help="JSON of AcquisitionRanges for --randomize")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the noise (and of the --randomize draw)")] = 0,
    quick: Annotated[bool, typer.Option(help="Gaussian PSF + block average + noise")] = False,
    acquisition: Annotated[
        Path | None,
        typer.Option(
            help="acquisition file (microsr fit-acquisition): its settings instead of the "
            "options above (giving them too is an error, a --factor must be the file's; "
            "--seed still sets the noise); "
            "--randomize draws within its uncertainty"
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Simulate a low-resolution acquisition of a high-resolution volume."""
    from microsr.io import check_volume_output, write_stream
    from microsr.io.lazy import open_volume
    from microsr.simulate import simulate_slabs

    if acquisition is not None:
        config, record = _file_config(ctx, acquisition, randomize, ranges, seed, factor)
    else:
        config, record = _option_config(locals())
    check_volume_output(out_volume, inputs=[hr_volume], overwrite=overwrite)
    hr = open_volume(hr_volume, spacing_mm=parse_spacing(spacing))  # .zarr: slab by slab
    target, slabs = simulate_slabs(hr, config, progress=True)
    attenuation = target.metadata["acquisition_resolved"]["attenuation"]
    typer.echo(json.dumps(record | {"attenuation": attenuation}), err=True)
    typer.echo(write_stream(target, slabs, out_volume, overwrite=overwrite))


#: simulate's acquisition-setting parameters -> their options (refused beside --acquisition).
_SETTINGS = {
    "projections_ratio": "--projections-ratio", "photons": "--photons",
    "frames": "--frames", "reference_value": "--reference-value", "mu_bone": "--mu-bone",
    "filter": "--filter", "psf_sigma": "--psf-sigma", "shift": "--shift",
    "ring_strength": "--ring-strength", "quick": "--quick",
}  # fmt: skip


def _file_config(
    ctx: typer.Context, path: Path, randomize: bool, ranges: Path | None, seed: int, factor: int
) -> tuple:
    """``simulate --acquisition``: the file's acquisition with noise seed ``seed``, or a draw
    within its uncertainty seeded by ``seed``; and the record printed to stderr. A given
    ``--factor`` must be the file's."""
    import numpy as np

    from microsr.cli._app import given_options
    from microsr.cli._simulate import acquisition_file, refuse_explicit
    from microsr.simulate.acquisition_file import draw_within_uncertainty
    from microsr.simulate.randomize import draw_record

    refuse_explicit(ctx, _SETTINGS, path)
    given_factor = factor if given_options(ctx, {"factor": "--factor"}) else None
    file = acquisition_file(path, randomize, ranges, factor=given_factor)
    record = {"acquisition_file": str(path), "randomized": randomize}
    if randomize:
        config = draw_within_uncertainty(file, np.random.default_rng(seed))
        return config, record | {"draw": draw_record(config)}
    return file.acquisition.model_copy(update={"seed": seed}), record


def _option_config(opts: dict) -> tuple:
    """``simulate`` without ``--acquisition``: the config of the options (``opts``: the
    command's locals), randomised with ``--randomize``."""
    from microsr.simulate import AcquisitionConfig

    o = opts
    fields = {
        "factor": o["factor"], "projections_ratio": o["projections_ratio"],
        "photons": o["photons"], "frames": o["frames"], "seed": o["seed"], "quick": o["quick"],
        "mu_bone_per_mm": o["mu_bone"], "reference_value": parse_reference(o["reference_value"]),
        "filter_name": o["filter"], "psf_sigma_bins": o["psf_sigma"],
        "ring_strength": o["ring_strength"], "shift_hr_voxels": parse_shift(o["shift"]),
    }  # fmt: skip
    with option_errors():
        config = AcquisitionConfig(**fields)
    return maybe_randomize(config, o["randomize"], o["ranges"], o["seed"])
