"""Weights on disk: fp16 safetensors with their config and the sha256 of both.

A weights folder holds ``config.json``, ``model.safetensors`` and ``sha256.json``, the sha256 of
both as written: a file damaged later (a flipped byte in a tensor still loads) is refused rather
than generating quietly wrong output. The shipped folders under ``models/weights`` must carry
it; folders written before it existed are read without the check.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from angioflow.pipeline.errors import AngioflowError
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CONFIG_FILE",
    "MANIFEST_FILE",
    "LoadedModel",
    "SHIPPED_WEIGHTS",
    "WEIGHTS_FILE",
    "SavedWeights",
    "WeightsError",
    "read_weights",
    "save_weights",
    "verify_weights",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "sha256.json"
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"


class WeightsError(AngioflowError, ValueError):
    """A weights folder that cannot be used (missing, damaged or altered files); the message
    names the file and how to restore it."""


def save_weights(model: nn.Module, config: BaseModel, folder: Path, *, half: bool = True) -> None:
    """Write ``config.json``, ``model.safetensors`` (floating tensors in fp16 when ``half``) and
    ``sha256.json`` (both files' sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    state = {
        name: (t.half() if half and t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in model.state_dict().items()
    }
    save_file(state, str(folder / WEIGHTS_FILE))
    digests = {name: _sha256(folder / name) for name in (CONFIG_FILE, WEIGHTS_FILE)}
    (folder / MANIFEST_FILE).write_text(json.dumps(digests, indent=2) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _is_shipped(folder: Path) -> bool:
    return SHIPPED_WEIGHTS in folder.resolve().parents


def _restore_hint(folder: Path) -> str:
    if _is_shipped(folder):
        return "restore the shipped weights (git checkout models/weights, or reinstall angioflow)"
    return "restore the folder from a copy or train again"


def verify_weights(folder: Path) -> None:
    """Check ``config.json`` and ``model.safetensors`` against ``sha256.json``.

    Raises
    ------
    WeightsError
        If a digest differs, the manifest is unreadable, or a shipped folder has none.
    """
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        if _is_shipped(folder):
            raise WeightsError(f"{manifest} is missing; {_restore_hint(folder)}")
        return
    try:
        recorded = json.loads(manifest.read_text())
        expected = {name: str(recorded[name]) for name in (CONFIG_FILE, WEIGHTS_FILE)}
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{manifest} is damaged ({error}); {_restore_hint(folder)}") from error
    for name, digest in expected.items():
        if _sha256(folder / name) != digest:
            raise WeightsError(
                f"{folder / name} does not match the sha256 recorded in {manifest}: it is "
                f"damaged or was changed; {_restore_hint(folder)}"
            )


def read_weights(folder: Path, saved_by: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a folder written by :func:`save_weights`: the config values and a float32 state.

    ``saved_by`` names the writer in the error raised when a file is missing.

    Raises
    ------
    FileNotFoundError
        If ``config.json`` or ``model.safetensors`` is missing.
    WeightsError
        If a file does not match its recorded sha256, cannot be parsed, or holds a tensor
        with NaN or infinite values.
    """
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; pass a folder written by {saved_by}")
    verify_weights(folder)
    try:
        values = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise WeightsError(
            f"{config_path} is not valid JSON ({error}); {_restore_hint(folder)}"
        ) from error
    if not isinstance(values, dict):
        raise WeightsError(f"{config_path} holds no settings object; {_restore_hint(folder)}")
    try:
        stored = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(
            f"{weights_path} is damaged ({error}); {_restore_hint(folder)}"
        ) from error
    for name, tensor in stored.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(
                f"{weights_path}: tensor {name} holds NaN or infinite values; "
                f"{_restore_hint(folder)}"
            )
    state = {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
    return values, state


class SavedWeights:
    """``save``/``load`` for a torch module built from a pydantic config (``self.config``):
    ``config.json`` + ``model.safetensors`` via :func:`save_weights` / :func:`read_weights`."""

    config_class: ClassVar[type[BaseModel]]
    config: BaseModel

    def save(self, folder: Path, *, half: bool = True) -> None:
        """Write ``config.json`` and ``model.safetensors`` (fp16 when ``half``)."""
        save_weights(self, self.config, folder, half=half)  # type: ignore[arg-type]

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Rebuild a model saved by :meth:`save` (float32, eval mode).

        Raises
        ------
        WeightsError
            If the folder is damaged or its config and tensors do not fit this model.
        """
        values, state = read_weights(folder, f"{cls.__name__}.save")
        try:
            config = cls.config_class(**values)
        except (ValidationError, TypeError) as error:
            first = str(error).splitlines()[0]
            raise WeightsError(
                f"{folder / CONFIG_FILE} is not a {cls.__name__} config ({first}); "
                f"{_restore_hint(folder)}"
            ) from error
        model = cls(config)  # type: ignore[call-arg]
        try:
            model.load_state_dict(state)  # type: ignore[attr-defined]
        except RuntimeError as error:  # missing, unexpected or wrongly shaped tensors
            first = str(error).splitlines()[0]
            raise WeightsError(
                f"{folder / WEIGHTS_FILE} does not fit its config ({first}); "
                f"{_restore_hint(folder)}"
            ) from error
        return model.eval()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded for inference plus the sha256 of its weights file (recorded with every
    output), run with ``threads`` torch threads. Subclasses name ``model_class`` (a
    :class:`SavedWeights` module) and ``default_weights`` (its shipped folder)."""

    model_class: ClassVar[type[SavedWeights]]
    default_weights: ClassVar[Path]

    model: Any
    weights_sha256: str
    threads: int = 2

    def __post_init__(self) -> None:
        # oneDNN's CPU convolutions run ~1.6x faster on channels-last tensors (same
        # outputs to within 1e-6); the saved weights are unaffected.
        self.model.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, folder: Path | None = None) -> Self:
        """Load weights saved by ``model_class.save`` (default: the shipped weights)."""
        folder = cls.default_weights if folder is None else folder
        model = cls.model_class.load(folder)
        digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
        return cls(model, digest)
