"""Data for demonstration studies: phantom femur and spine sites, or slabs of one scan.

``microsr study-demo OUT_DIR`` writes ``OUT_DIR/data/manifest.csv`` (HR phantoms or slabs
and their simulated LR scans) and runs the study into ``OUT_DIR/study``.
"""

from __future__ import annotations

from pathlib import Path

from microsr.data.normalize import NormalizationConfig
from microsr.data.prepare import PrepareConfig
from microsr.demo import demo_train_config, make_pairs, simulated_manifest
from microsr.morphometry.segment import MorphometryConfig
from microsr.simulate import AcquisitionConfig, make_phantom
from microsr.study.config import StudyConfig

#: Train/val/test fractions of the demos: 8 specimens per site -> 4 / 1 / 3.
DEMO_FRACTIONS = (0.5, 0.125, 0.375)


def phantom_manifest(
    out_dir: str | Path,
    *,
    per_site: int = 8,
    shape: tuple[int, int, int] = (24, 128, 128),
    seed: int = 0,
    quick: bool = False,
) -> Path:
    """Phantom "femur" (thick cortex, sparse rods) and "spine" (thin cortex, dense plates)
    specimens at 10 um with simulated 20 um LR scans; returns the manifest path."""
    specimens = [
        (f"{site}{i:02d}", site, make_phantom(shape, spacing_mm=0.01, site=site, seed=seed + i))
        for site in ("femur", "spine")
        for i in range(per_site)
    ]
    return make_pairs(specimens, Path(out_dir), AcquisitionConfig(seed=seed, quick=quick))


def slab_manifest(
    volume: str | Path,
    out_dir: str | Path,
    *,
    n_slabs: int = 8,
    spacing_mm: float | None = None,
    site: str = "user",
    seed: int = 0,
) -> Path:
    """Slabs of one HR scan as pseudo-specimens of one site, with simulated LR scans."""
    return simulated_manifest(
        out_dir, data=volume, spacing_mm=spacing_mm, n_specimens=n_slabs, seed=seed, site=site
    )


def demo_config(
    *, minutes: float = 1.0, calibrated: bool = True, seed: int = 0, features_3d: bool = True
) -> StudyConfig:
    """A study config that trains each model for ``minutes`` on a CPU.

    Calibrated data (phantoms, mg HA/cm3) are normalised with the fixed density window
    -200..1800 mg HA/cm3, so that SR output maps back to density and the 500 mg HA/cm3
    threshold means the same on LR, SR and HR (per-slice min-max would map SR back through
    the noisy LR slice's range, biasing bone area); uncalibrated data use the paper's
    per-slice min-max and Otsu's threshold of the HR scan.
    """
    morph = MorphometryConfig() if calibrated else MorphometryConfig(threshold="otsu", ta="roi")
    norm = (
        NormalizationConfig(mode="window", low=-200.0, high=1800.0)
        if calibrated
        else NormalizationConfig()
    )
    return StudyConfig(
        prepare=PrepareConfig(
            roi=400, split_seed=seed, fractions=DEMO_FRACTIONS, normalization=norm
        ),
        train=demo_train_config(minutes=minutes, seed=seed),
        morphometry=morph,
        features_3d=features_3d,
    )
