"""``study.json``, the record a study is built from and its report read
(:class:`StudyRecord`). It lives here, below :mod:`microsr.study`, because the report
(imported by the study) reads it too; the study writes it
(:func:`microsr.study.single.start_study`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from microsr.errors import MicrosrError


class StudyRecord(BaseModel):
    """``study.json``: what a study was run on and with (written first, checked on resume).

    ``config`` is kept as written (the :class:`StudyConfig` as JSON), so a study written by an
    older microsr, whose config lacks newer options, still reads and resumes
    (:meth:`same_config`). :meth:`to_json` writes only the fields a record was given.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    manifest: str | None = None
    config: dict = {}
    software: dict = {}
    title: str | None = None

    @classmethod
    def read(cls, path: Path) -> StudyRecord:
        """Read ``study.json`` at ``path``."""
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValidationError) as exc:
            raise MicrosrError(f"{path}: not a readable study.json ({exc})") from None

    def same_config(self, new: StudyRecord) -> bool:
        """Whether ``new`` (a run's record) has this study's config. ``device`` may differ,
        and an option newer than the study (absent from its ``config``) matches when unset."""
        old = {k: v for k, v in self.config.items() if k != "device"}
        now = {k: v for k, v in new.config.items()
               if k != "device" and (k in self.config or v is not None)}  # fmt: skip
        return old == now

    def to_json(self) -> dict:
        """``study.json`` as written (the fields the record was given)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def folds(self) -> int | None:
        """The study's cross-validation folds (``config.folds``); ``None``: one split."""
        return self.config.get("folds")

    @property
    def model_name(self) -> str | None:
        """The SR network's name (``config.train.model.name``), when recorded."""
        return self.config.get("train", {}).get("model", {}).get("name")
