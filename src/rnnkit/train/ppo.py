"""PPO for recurrent agents: rollouts that carry each environment's memory, and TorchRL's loss.

    experience = ExperienceConfig(env="RepeatPreviousEasy")
    trainer = PPOTrainer(agent, TrainConfig(epochs=4, batch_size=4), experience, "runs/rl")
    history = trainer.fit()          # one row per update: env steps, mean episode return, losses

Each update collects a rollout of ``rollout_steps`` steps from ``n_envs`` copies of the environment
(:class:`Collector`): the agent's memory is carried from step to step and across rollouts, and
restarts from its initial state exactly where an episode begins. Advantages and value targets come
from TorchRL's generalised advantage estimate (Schulman et al. 2016); a truncated episode (a time
limit) is valued from its last observation, a terminated one is not. Then ``train.epochs`` passes over
the rollout in minibatches of ``train.batch_size`` rollout rows (whole rows, so each keeps its time
order), each minibatch scored by TorchRL's ``ClipPPOLoss`` (clipped ratio, entropy bonus, value loss;
advantages normalised per minibatch), the gradient clipped to ``train.clip_grad_norm``.
The memory reads each row as :meth:`RecurrentAgent.policy` does: episode pieces in one padded batch,
from the state the row had when the rollout began.

Train keys: ``optimizer``, ``schedule`` (per optimiser step), ``clip_grad_norm``, ``epochs`` (passes
per rollout), ``batch_size`` (rows per minibatch), ``seed``, ``device``, ``progress``. Keys of
supervised training (``tbptt``, ``accumulate``, early stopping, ...) are refused. A checkpoint is
written after every update; ``resume`` continues from it with new episodes (the environments are
seeded again from the update's number), the weights, optimiser and log as they were.
"""

from __future__ import annotations

import csv
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.data.envs import EnvPool, ExperienceConfig
from rnnkit.errors import ConfigError
from rnnkit.models.agent import AgentState, MultiCategorical, RecurrentAgent, reset_rows, select_rows
from rnnkit.runtime import seed_everything, select_device
from rnnkit.train import checkpoint
from rnnkit.train.options import TrainConfig
from rnnkit.train.schedules import LRSchedule, make_optimizer

SUPERVISED_ONLY = (  # train keys PPO has no use for: set, they are refused
    "max_steps", "shuffle", "bucket", "clip_grad_value", "tbptt", "checkpoint_activations", "eval_every",
    "early_stopping", "checkpoint_every", "gradual_unfreezing", "num_workers", "accumulate", "nan_policy",
    "monitor", "mode",
)  # fmt: skip
RETURNS_WINDOW = 100  # episodes the logged mean return is taken over
LOGGED = {  # ClipPPOLoss's outputs -> the log's columns (means over an update's minibatches)
    "loss_objective": "policy_loss", "loss_critic": "value_loss", "loss_entropy": "entropy_loss",
    "entropy": "entropy", "kl_approx": "kl", "clip_fraction": "clip_fraction",
}  # fmt: skip


@dataclass
class Rollout:
    """``rollout_steps`` steps of ``n_envs`` environments: observations (n, T, D), starts (n, T) (the step
    begins an episode), actions (n, T, A), log_probs, values, rewards (n, T), done and terminated
    (n, T) bool, ``state``: the memory each row had before its first step, and ``next_values`` (n,),
    the value of the observation after the last step."""

    observations: Tensor
    starts: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    rewards: Tensor
    done: Tensor
    terminated: Tensor
    state: AgentState
    next_values: Tensor


class Collector:
    """Steps ``envs`` with ``agent``, carrying each env's memory and restarting it where an episode
    begins; ended episodes' returns go to ``episode_returns``."""

    def __init__(self, agent: RecurrentAgent, envs: EnvPool, gamma: float, device: torch.device) -> None:
        self.agent, self.envs, self.gamma, self.device = agent, envs, gamma, device
        self.state = agent.initial_state(envs.n)
        self.episode_returns: deque[float] = deque(maxlen=RETURNS_WINDOW)
        self.episodes = 0  # ended so far

    @torch.no_grad()
    def collect(self, steps: int) -> Rollout:
        agent, envs, device = self.agent, self.envs, self.device
        fresh = agent.initial_state(envs.n)
        columns: dict[str, list[Tensor]] = {
            k: [] for k in ("obs", "starts", "act", "logp", "val", "rew", "done", "term")
        }
        first = None
        for _ in range(steps):
            starts = envs.starts.to(device)
            self.state = reset_rows(self.state, fresh, starts)
            if first is None:
                first = self.state
            obs = envs.observations.to(device)
            logits, values, self.state = agent.step(obs, self.state)
            dist = agent.distribution(logits)
            actions = dist.sample()
            step = envs.step(actions)
            rewards = step.rewards.to(device)
            if step.truncated.any():  # a time limit, not an end: add the discounted value of where it stopped
                rows = step.truncated.to(device)
                rewards[rows] += (
                    self.gamma * agent.step(step.final.to(device)[rows], select_rows(self.state, rows))[1]
                )
            row = (obs, starts, actions, dist.log_prob(actions), values, rewards, step.done, step.terminated)
            for key, value in zip(columns, row, strict=True):
                columns[key].append(value.to(device))
            self.episode_returns.extend(step.episode_returns)
            self.episodes += len(step.episode_returns)
        self.state = reset_rows(self.state, fresh, envs.starts.to(device))
        next_values = agent.step(envs.observations.to(device), self.state)[1]
        stacked = [torch.stack(columns[k], 1) for k in columns]  # each (n, T, ...)
        return Rollout(*stacked, state=first, next_values=next_values)


class _OnRollout(nn.Module):
    """One of the agent's outputs over rows of the rollout being learnt from, as TorchRL's loss
    calls it: (observation, starts, row) of a minibatch -> logits (mb, T, sum A) or values (mb, T, 1).
    ``state`` is the memory every row of the rollout began with; ``row`` picks each minibatch row's."""

    def __init__(self, agent: RecurrentAgent, output: str) -> None:
        super().__init__()
        self.agent, self.output = agent, output
        self.state: AgentState | None = None

    def forward(self, observation: Tensor, starts: Tensor, row: Tensor) -> Tensor:
        state = select_rows(self.state, row[:, 0])
        if self.output == "policy":
            return self.agent.policy(observation, starts, state)
        return self.agent.value(observation, starts, state)[..., None]


def clip_ppo_loss(agent: RecurrentAgent) -> tuple[nn.Module, list[_OnRollout]]:
    """TorchRL's ClipPPOLoss over ``agent`` and the two modules whose ``state`` must be set to a
    rollout's before the loss reads it."""
    from tensordict.nn import TensorDictModule
    from torchrl.modules import ProbabilisticActor
    from torchrl.objectives import ClipPPOLoss

    c = agent.config
    policy, value = _OnRollout(agent, "policy"), _OnRollout(agent, "value")
    keys = ["observation", "starts", "row"]
    actor = ProbabilisticActor(
        TensorDictModule(policy, in_keys=keys, out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=MultiCategorical,
        distribution_kwargs={"sizes": tuple(c.action_sizes)},
    )
    critic = TensorDictModule(value, in_keys=keys, out_keys=["state_value"])
    loss = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=c.clip_epsilon,
        entropy_coeff=c.entropy_coef,
        critic_coeff=c.value_coef,
        loss_critic_type="l2",
        normalize_advantage=True,
        functional=False,
    )
    return loss, [policy, value]


def advantages(rollout: Rollout, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """TorchRL's generalised advantage estimate over a rollout: (advantages, value targets), (n, T, 1)."""
    from torchrl.objectives.value.functional import generalized_advantage_estimate

    values = rollout.values[..., None]  # (n, T, 1)
    following = torch.cat([values[:, 1:], rollout.next_values[:, None, None]], 1)  # V(s_t+1); masked at ends
    return generalized_advantage_estimate(
        gamma,
        lam,
        values,
        following,
        rollout.rewards[..., None],
        rollout.done[..., None],
        rollout.terminated[..., None],
        time_dim=-2,
    )


def check_train(config: TrainConfig, experience: ExperienceConfig) -> None:
    """Raise ConfigError when ``config`` sets a key PPO does not use, or a minibatch larger than a rollout."""
    defaults = TrainConfig()
    for key in SUPERVISED_ONLY:
        if getattr(config, key) != getattr(defaults, key):
            raise ConfigError(
                f"train.{key} is for supervised training; a PPO run does not use it: drop it "
                "(PPO takes optimizer, schedule, clip_grad_norm, epochs, batch_size, seed, device, "
                "progress)"
            )
    if config.batch_size > experience.n_envs:
        raise ConfigError(
            f"train.batch_size {config.batch_size} counts rollout rows per minibatch and cannot pass "
            f"data.n_envs {experience.n_envs}: lower it or raise n_envs"
        )


class PPOTrainer:
    """Trains ``agent`` on ``experience``'s environment by PPO (module docs)."""

    def __init__(
        self,
        agent: RecurrentAgent,
        config: TrainConfig,
        experience: ExperienceConfig,
        run_dir: str | Path | None = None,
    ) -> None:
        check_train(config, experience)
        self.config, self.experience = config, experience
        self.device = select_device(config.device)
        self.agent = agent.to(self.device)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.optimizer = make_optimizer(agent.parameters(), config.optimizer)
        self.loss, self.on_rollout = clip_ppo_loss(agent)
        self.batch_steps = experience.n_envs * experience.rollout_steps
        self.updates = math.ceil(experience.total_steps / self.batch_steps)
        self.minibatches = math.ceil(experience.n_envs / config.batch_size)
        self.schedule = LRSchedule(
            self.optimizer, config.schedule, self.updates * config.epochs * self.minibatches
        )
        self.update, self.step, self.history = 0, 0, []
        self.returns: list[float] = []
        self.best_step, self.stopped_early = None, False  # as the Trainer's, for the run's report

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoints" / "last.pt"

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Collect and learn until ``total_steps`` environment steps are done; the log's rows."""
        if resume and self.checkpoint_path is not None:
            self._load()
        seed_everything(self.config.seed + self.update)
        e = self.experience
        envs = EnvPool(e.env, e.n_envs, seed=e.seed * 1_000_003 + self.update)
        collector = Collector(self.agent, envs, e.gamma, self.device)
        collector.episode_returns.extend(self.returns)
        collector.episodes = self.history[-1]["episodes"] if self.history else 0
        bar = self._bar()
        try:
            while self.update < self.updates:
                started = time.perf_counter()
                self.agent.eval()
                rollout = collector.collect(e.rollout_steps)
                self.agent.train()
                losses = self._learn(rollout)
                self.update += 1
                self.returns = list(collector.episode_returns)
                row = {
                    "step": self.update,
                    "env_steps": self.update * self.batch_steps,
                    "episode_return": sum(self.returns) / len(self.returns) if self.returns else float("nan"),
                    "episodes": collector.episodes,
                    **losses,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "steps_per_s": self.batch_steps / (time.perf_counter() - started),
                }
                self.history.append(row)
                self._save()
                if bar is not None:
                    bar.set_postfix(episode_return=f"{row['episode_return']:.3f}", refresh=False)
                    bar.update(self.batch_steps)
        finally:
            if bar is not None:
                bar.close()
            envs.close()
        return self.history

    def _learn(self, rollout: Rollout) -> dict[str, float]:
        from tensordict import TensorDict

        advantage, target = advantages(rollout, self.experience.gamma, self.experience.gae_lambda)
        for module in self.on_rollout:
            module.state = rollout.state
        n, T = rollout.starts.shape
        keys = self.loss.tensor_keys
        data = TensorDict(
            {
                "observation": rollout.observations,
                "starts": rollout.starts,
                "row": torch.arange(n, device=self.device)[:, None].expand(n, T),
                keys.action: rollout.actions,
                keys.sample_log_prob: rollout.log_probs,
                keys.advantage: advantage,
                keys.value_target: target,
            },
            batch_size=[n, T],
        )
        sums, count = dict.fromkeys(LOGGED, 0.0), 0
        for _ in range(self.config.epochs):
            order = torch.randperm(n, device=self.device)
            for rows in order.split(self.config.batch_size):
                out = self.loss(data[rows])
                loss = sum(v for k, v in out.items() if k.startswith("loss_"))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.config.clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.agent.parameters(), self.config.clip_grad_norm)
                self.schedule.set(self.step)
                self.optimizer.step()
                self.step += 1
                for key in LOGGED:
                    sums[key] += float(out[key].detach())
                count += 1
        return {LOGGED[key]: total / count for key, total in sums.items()}

    def _bar(self):
        if not self.config.progress:
            return None
        from tqdm.auto import tqdm

        total = self.updates * self.batch_steps
        return tqdm(total=total, initial=self.update * self.batch_steps, unit="env step", dynamic_ncols=True)

    def _save(self) -> None:
        if self.run_dir is None:
            return
        with open(self.run_dir / "log.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(self.history[0]))
            writer.writeheader()
            writer.writerows(self.history)
        saved = {
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "update": self.update,
            "step": self.step,
            "history": self.history,
            "returns": self.returns,
        }
        checkpoint.atomic_save(saved, self.checkpoint_path, keep_previous=True)

    def _load(self) -> None:
        found = checkpoint.load_latest(self.checkpoint_path, ("model", "optimizer", "update", "history"))
        if found is None:
            return
        saved, _ = found
        self.agent.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.update, self.step = saved["update"], saved["step"]
        self.history, self.returns = saved["history"], saved["returns"]
