"""Weights and training runs on disk: fp16 safetensors with their config, checkpoints, logs.

A weights folder holds ``config.json``, ``model.safetensors`` and ``sha256.json``, the sha256 of
both as written: a file damaged later (a flipped byte in a tensor still loads) is refused rather
than generating quietly wrong output. The shipped folders under ``models/weights`` must carry
it; folders written before it existed are read without the check.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from angioflow.pipeline.errors import AngioflowError
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = [
    "CONFIG_FILE",
    "MANIFEST_FILE",
    "SHIPPED_WEIGHTS",
    "WEIGHTS_FILE",
    "RunFolder",
    "SavedWeights",
    "WeightsError",
    "adamw_one_cycle",
    "continue_from",
    "ema_model",
    "read_weights",
    "save_weights",
    "verify_weights",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "sha256.json"
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
RUN_CONFIG_FILE = "training_config.json"


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


def _restore_hint(folder: Path) -> str:
    if folder.resolve().parent == SHIPPED_WEIGHTS:
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
        if folder.resolve().parent == SHIPPED_WEIGHTS:
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


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights (and a copy of its buffers)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def continue_from(model: nn.Module, folder: str | None, load: Callable[[Path], nn.Module]) -> None:
    """Copy the weights saved in ``folder`` into ``model`` (nothing when ``folder`` is None).

    Raises
    ------
    ValueError
        If the saved model's config differs from ``model``'s.
    """
    if folder is None:
        return
    initial = load(Path(folder))
    if initial.config != model.config:
        raise ValueError(
            f"init_weights {folder} has model config {initial.config}, not the run's {model.config}"
        )
    model.load_state_dict(initial.state_dict())


def adamw_one_cycle(
    model: nn.Module, learning_rate: float, weight_decay: float, steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.OneCycleLR]:
    """The optimiser and learning-rate schedule every angioflow training loop uses."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    # The warm-up is 5 % of the run; OneCycleLR divides by its length in steps minus one, so
    # runs of 4-39 steps get a two-step warm-up (a 20-step run raised ZeroDivisionError).
    warm_up = max(0.05, 2 / steps) if steps >= 4 else 0.05
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=steps, pct_start=warm_up
    )
    return optimiser, schedule


class RunFolder:
    """A training run's folder: its config, the latest checkpoint and a JSON-lines log.

    A checkpoint holds the model, optimiser, schedule, step, the sampler's numpy RNG and torch's
    RNG, so a resumed run continues exactly where the interrupted one would have gone.
    """

    def __init__(self, folder: Path, config: BaseModel, device: torch.device) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.config, self.device = folder, config, device
        self.started = time.perf_counter()

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def _is_this_config(self, saved: Any) -> bool:
        # Validated, not compared as text: a run saved before an option with a default existed
        # is the same run as one with that option at its default.
        try:
            return type(self.config).model_validate(saved) == self.config
        except ValidationError:
            return False

    def resume(
        self,
        model: nn.Module,
        optimiser: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        rng: np.random.Generator,
        *,
        enabled: bool = True,
        extras: dict[str, Any] | None = None,
        write_config: bool = True,
    ) -> int:
        """Load the checkpoint when present (its config must match); return the step reached.

        ``extras`` are further objects with ``state_dict``/``load_state_dict`` (an EMA copy of
        the model) saved and restored with it; ``write_config=False`` for the processes of a
        distributed run other than rank 0.

        Raises
        ------
        ValueError
            If the checkpoint was written by a run with a different config.
        """
        config_path = self.folder / RUN_CONFIG_FILE
        start = 0
        if enabled and self.checkpoint_path.is_file():
            saved = json.loads(config_path.read_text()) if config_path.is_file() else None
            if not self._is_this_config(saved):
                raise ValueError(
                    f"{self.checkpoint_path} was made with a different training config; pass "
                    "--no-resume or the original --config"
                )
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            rng.bit_generator.state = json.loads(state["sampler_rng"])
            torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it
            for name, extra in (extras or {}).items():
                extra.load_state_dict(state[name])
            start = int(state["step"])
        if write_config:
            config_path.write_text(self.config.model_dump_json(indent=2))
        return start

    def checkpoint(
        self,
        step: int,
        loss: float,
        model: nn.Module,
        optimiser: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        rng: np.random.Generator,
        *,
        extras: dict[str, Any] | None = None,
    ) -> None:
        """Save the checkpoint (written to a temp file, then renamed) and append one log line
        (step, smoothed loss, lr, seconds)."""
        state = {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "step": step,
            "sampler_rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
        }
        state.update({name: extra.state_dict() for name, extra in (extras or {}).items()})
        temp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, temp)
        temp.replace(self.checkpoint_path)
        entry = {
            "step": step,
            "loss": round(loss, 5),
            "lr": schedule.get_last_lr()[0],
            "seconds": round(time.perf_counter() - self.started, 1),
            "device": self.device.type,
        }
        with open(self.folder / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
