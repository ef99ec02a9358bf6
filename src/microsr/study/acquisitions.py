"""Cross-acquisition studies: the same bones scanned (simulated) with several protocols.

Each protocol becomes a "site" of the study, so the study's site x site matrix is an
acquisition x acquisition matrix: a model trained on protocol A, scored on the test bones
acquired with protocol B. The rows of one bone share a ``subject``, so a test bone is never
trained on under any protocol. The paper's experiment (David et al., ORS) compares LR
acquired at 1 and at 3 frame averages: :data:`FRAMES_PROTOCOLS`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.simulated import SimulationConfig, simulate_specimen_lr
from microsr.io import write_volume
from microsr.simulate import AcquisitionConfig, AcquisitionRanges
from microsr.volume import Volume

log = logging.getLogger(__name__)

#: The paper's frame-averaging experiment: LR with 1 and with 3 frames per projection, and
#: randomised acquisitions (one draw per bone from the default ranges) beside them.
FRAMES_PROTOCOLS: dict[str, dict | AcquisitionRanges] = {
    "1frame": {"frames": 1},
    "3frames": {"frames": 3},
    "random": AcquisitionRanges(),
}


def _protocol(fields, base: AcquisitionConfig) -> SimulationConfig:
    """The simulation of one protocol: ``base`` with ``fields``, or a draw from ranges."""
    if isinstance(fields, AcquisitionRanges):
        return SimulationConfig(acquisition=base, randomize=True, ranges=fields, seed=base.seed)
    return SimulationConfig(acquisition=base.model_copy(update=fields), seed=base.seed)


def acquisition_manifest(
    specimens: list[tuple[str, str, Volume]],
    out_dir: str | Path,
    protocols: dict[str, dict | AcquisitionRanges],
    *,
    base: AcquisitionConfig | None = None,
) -> Path:
    """Simulate every HR specimen under every protocol; write volumes and a manifest.

    Parameters
    ----------
    specimens
        ``(id, site, hr_volume)`` (the site is not used: the protocol is the study's site).
    out_dir
        Folder of the volumes and ``manifest.csv``.
    protocols
        Protocol name -> :class:`AcquisitionConfig` fields overriding ``base``, or
        :class:`AcquisitionRanges` to draw one acquisition per bone; every LR scan is
        seeded by ``base.seed`` and the bone's id (:func:`simulate_specimen_lr`).
    base
        The acquisition the protocols start from (default: the simulator's defaults).

    Returns
    -------
    Path
        The manifest: rows ``<id>_<protocol>``, site ``<protocol>``, subject ``<id>``.
    """
    out_dir, base = Path(out_dir), base or AcquisitionConfig()
    rows = []
    for sid, _site, hr in specimens:
        hr_path = write_volume(hr, out_dir / f"{sid}_hr.mha")
        for name, fields in protocols.items():
            # seeded by the bone's id: one bone has the same noise seed under every protocol
            lr, _ = simulate_specimen_lr(hr, sid, _protocol(fields, base))
            lr_path = write_volume(lr, out_dir / f"{sid}_{name}_lr.mha")
            rows.append(
                SpecimenRow(f"{sid}_{name}", name, lr_path, hr_path, extra={"subject": sid})
            )
            log.info("simulated %s under %s", sid, name)
    return write_manifest(rows, out_dir / "manifest.csv")
