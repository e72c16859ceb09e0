"""ULMFiT's fine-tuning over a model's layer groups (Howard & Ruder 2018, sec. 3.2 and 3.3):
discriminative learning rates and gradual unfreezing.

A model offers its groups as ``layer_groups() -> list[list[nn.Parameter]]``, bottom (embedding) to
top (head), every parameter exactly once. A model without the method is one group, and both options
refuse it with a ConfigError.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from rnnkit.errors import ConfigError
from rnnkit.train.options import OptimizerConfig


def layer_groups(model: nn.Module, key: str) -> list[list[nn.Parameter]]:
    """``model.layer_groups()``, checked to hold each parameter once; ``key`` names the option that
    needs them in the ConfigError for a model without groups."""
    if not hasattr(model, "layer_groups"):
        raise ConfigError(f"model {type(model).__name__} has no layer groups: drop {key}")
    groups = model.layer_groups()
    listed = [id(p) for group in groups for p in group]
    if len(listed) != len(set(listed)) or set(listed) != {id(p) for p in model.parameters()}:
        raise ConfigError(
            f"{type(model).__name__}.layer_groups() must list each of the model's parameters exactly "
            f"once: it lists {len(listed)} ({len(set(listed))} distinct) of {len(list(model.parameters()))}"
        )
    return groups


def optimizer_params(model: nn.Module, config: OptimizerConfig) -> Iterable[nn.Parameter] | list[dict]:
    """What the optimiser takes: all parameters at ``lr``, or with ``discriminative`` = d one group per
    layer group, the top one at lr and the one ``depth`` groups below it at lr / d ** depth (eq. 2)."""
    if config.discriminative is None:
        return model.parameters()
    groups = layer_groups(model, "train.optimizer.discriminative")
    d, top = config.discriminative, len(groups) - 1
    return [{"params": group, "lr": config.lr / d ** (top - i)} for i, group in enumerate(groups)]


class GradualUnfreezing:
    """Epoch 0 trains the top layer group only; each later epoch unfreezes the next group down (sec. 3.3).

    Frozen is ``requires_grad`` False with no gradient, which torch's optimisers skip: no update, no
    weight decay, no momentum. A parameter frozen before training (pretrained embeddings loaded with
    ``freeze=True``) stays frozen; :meth:`release` gives every parameter back its own setting. The
    frozen groups follow from the epoch alone, so a resumed run freezes what the uninterrupted one did.
    """

    def __init__(self, model: nn.Module) -> None:
        self.groups = layer_groups(model, "train.gradual_unfreezing")
        self.trainable = [[p.requires_grad for p in group] for group in self.groups]

    def apply(self, epoch: int) -> None:
        """Freeze the groups below the ``epoch + 1`` top ones; unfreeze those."""
        lowest = max(0, len(self.groups) - 1 - epoch)  # the lowest group that trains
        for i, (group, trainable) in enumerate(zip(self.groups, self.trainable, strict=True)):
            for p, own in zip(group, trainable, strict=True):
                p.requires_grad_(own and i >= lowest)
                if not p.requires_grad:
                    p.grad = None

    def release(self) -> None:
        for group, trainable in zip(self.groups, self.trainable, strict=True):
            for p, own in zip(group, trainable, strict=True):
                p.requires_grad_(own)
