"""What every training loop shares: the recipe base class, the optimiser, EMA, and run folders
(checkpoints that resume exactly, a JSON-lines log).

A recipe is a frozen pydantic model whose values a YAML file of ``configs/`` holds; its defaults
are the recipe of the shipped weights, so ``VesselTrainingConfig()`` is ``configs/vessel.yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from angioflow.pipeline.errors import AngioflowError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = [
    "CONFIGS",
    "RunFolder",
    "SupervisedTrainer",
    "SupervisedTrainingConfig",
    "TrainingConfig",
    "TrainingRunError",
    "adamw_one_cycle",
    "continue_from",
    "ema_model",
]

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
RUN_CONFIG_FILE = "training_config.json"

ModelT = TypeVar("ModelT", bound=nn.Module)


class TrainingRunError(AngioflowError, ValueError):
    """A training run that cannot go on: ``init_weights`` of another architecture, or a run
    folder whose checkpoint was made with another recipe; the message says which and the fix."""


class TrainingConfig(BaseModel):
    """Base of every training recipe: frozen, unknown keys refused (a misspelt option fails
    instead of being ignored); saved as ``training_config.json`` in its run folder.
    ``checkpoint_every`` is in steps; ``seed`` fixes the weights' initialisation and the data
    order; ``threads`` is torch's CPU thread count."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint_every: int = Field(250, ge=1)
    seed: int = 0
    threads: int = Field(2, ge=1)


class SupervisedTrainingConfig(TrainingConfig):
    """Base of the recipes :class:`SupervisedTrainer` runs: AdamW at ``learning_rate`` with
    ``weight_decay``, optionally from the weights saved in ``init_weights`` (a folder of the
    model's ``save``)."""

    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    init_weights: str | None = None


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights (and a copy of its buffers)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def continue_from(model: nn.Module, folder: str | None, load: Callable[[Path], nn.Module]) -> None:
    """Copy the weights saved in ``folder`` into ``model`` (nothing when ``folder`` is None).

    Raises
    ------
    TrainingRunError
        If the saved model's config differs from ``model``'s.
    """
    if folder is None:
        return
    initial = load(Path(folder))
    if initial.config != model.config:
        raise TrainingRunError(
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
    RNG, so a resumed run continues exactly where the interrupted one would have gone. The log
    records the loss smoothed over about 50 steps (:meth:`record`).
    """

    def __init__(self, folder: Path, config: TrainingConfig, device: torch.device) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.config, self.device = folder, config, device
        self.started = time.perf_counter()
        self.smoothed: float | None = None

    def record(self, loss: torch.Tensor) -> float:
        """Fold one step's loss into the smoothed loss the log records (the first step of this
        process starts it); returns the step's own loss."""
        value = float(loss.detach())
        self.smoothed = value if self.smoothed is None else 0.98 * self.smoothed + 0.02 * value
        return value

    def due(self, step: int, every: int) -> bool:
        """Whether ``step`` (counted from 1) is a multiple of ``every`` or the recipe's last
        (every recipe has ``steps``): the steps that checkpoint or draw samples."""
        return step % every == 0 or step == self.config.steps  # type: ignore[attr-defined]

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
        TrainingRunError
            If the checkpoint was written by a run with a different config.
        """
        config_path = self.folder / RUN_CONFIG_FILE
        start = 0
        if enabled and self.checkpoint_path.is_file():
            saved = json.loads(config_path.read_text()) if config_path.is_file() else None
            if not self._is_this_config(saved):
                raise TrainingRunError(
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
        model: nn.Module,
        optimiser: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        rng: np.random.Generator,
        *,
        extras: dict[str, Any] | None = None,
    ) -> None:
        """Save the checkpoint (written to a temp file, then renamed) and append one log line
        (step, the smoothed loss of the steps :meth:`record` was given, lr, seconds)."""
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
            "loss": round(self.smoothed, 5),
            "lr": schedule.get_last_lr()[0],
            "seconds": round(time.perf_counter() - self.started, 1),
            "device": self.device.type,
        }
        with open(self.folder / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


class SupervisedTrainer(Generic[ModelT]):
    """The supervised training loop of one model (the vessel U-Net, the HVGN): AdamW,
    one-cycle schedule, run folder. A model's module binds its recipe's parts once, as in
    ``train_vessel = SupervisedTrainer(VesselUNet, patch_sampler, batch_loss)``, and callers
    run ``train_vessel(config, images, out_dir)``.

    Parameters
    ----------
    model_class : type
        Built as ``model_class(config.model)``, from ``config.init_weights`` when given.
    new_sampler : callable
        ``new_sampler(config, images)``: the batch sampler, whose ``rng`` the checkpoints carry.
    batch_loss : callable
        ``batch_loss(config, model, sampler, device)``: the loss of one batch, minimised at
        every step.
    """

    def __init__(
        self,
        model_class: type[ModelT],
        new_sampler: Callable[[Any, Any], Any],
        batch_loss: Callable[[Any, ModelT, Any, torch.device], torch.Tensor],
    ) -> None:
        self.model_class, self.new_sampler, self.batch_loss = model_class, new_sampler, batch_loss

    def __call__(
        self,
        config: Any,
        images: Any,
        out_dir: Path,
        *,
        resume: bool = True,
        on_step: Callable[[int, float], None] | None = None,
    ) -> ModelT:
        """Train on ``images`` (the model's training images at its working scale) with the
        recipe ``config``; returns the model in eval mode, on the CPU.

        ``out_dir`` receives ``training_config.json``, ``checkpoint.pt`` (every
        ``checkpoint_every`` steps), ``log.jsonl`` and, at the end, the fp16 weights in
        ``weights/``; with ``resume`` a run continues from its ``checkpoint.pt`` (whose config
        must match). ``on_step(step, loss)`` gets the loss smoothed over about 50 steps after
        every step (progress bars).
        """
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = self.model_class(config.model)
        continue_from(model, config.init_weights, self.model_class.load)
        model = model.to(device)
        optimiser, schedule = adamw_one_cycle(
            model, config.learning_rate, config.weight_decay, config.steps
        )
        sampler = self.new_sampler(config, images)
        run = RunFolder(out_dir, config, device)
        start = run.resume(model, optimiser, schedule, sampler.rng, enabled=resume)
        model.train()
        for step in range(start + 1, config.steps + 1):
            loss = self.batch_loss(config, model, sampler, device)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            run.record(loss)
            if on_step is not None:
                on_step(step, run.smoothed)
            if run.due(step, config.checkpoint_every):
                run.checkpoint(step, model, optimiser, schedule, sampler.rng)
        model.eval()
        model.cpu().save(out_dir / "weights")
        return model
