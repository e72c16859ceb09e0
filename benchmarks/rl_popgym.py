"""Recurrent PPO on POPGym: rnnkit's agent beside sb3-contrib's RecurrentPPO, same steps and seeds.

For each environment (the shipped configs/rl_*.yaml) and seed, two trainings of the same budget:

- ``rnnkit``: ``rnnkit train configs/rl_<env>.yaml`` (``train_run``), a GRU memory of 64 by default
  (``--cell`` picks another: lstm, mingru, ntm ...);
- ``RecurrentPPO``: sb3-contrib's, its own LSTM of 64 units, with the config's PPO settings: n_envs
  copies, rollout steps, epochs, minibatch (rows x rollout steps), learning rate, clipping, entropy
  and value weights, gamma and GAE lambda.

Both are then judged alike: ``eval_episodes`` new episodes (the same seeds for both), each from its
start, sampling actions (``sampled``) and taking the likeliest (``greedy``); and POPGym's own
measure, the mean maximum episodic return (MMER: the best mean return of 100 training episodes
seen during training; Morad et al. 2023 report it after 15M steps). Returns are POPGym's, in [-1, 1].

    python benchmarks/rl_popgym.py [--envs repeat_previous count_recall] [--seeds 0 1 2] [--steps N]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

import torch

from rnnkit.run import load_run_config, resolve_model, train_run
from rnnkit.tasks.rl import play

ROOT = Path(__file__).resolve().parents[1]
ENVS = ("repeat_previous", "position_only_cartpole", "autoencode", "count_recall")


class LSTMState(NamedTuple):
    h: torch.Tensor  # (1, B, H)
    c: torch.Tensor


class SB3Agent:
    """RecurrentPPO's policy as :func:`rnnkit.tasks.rl.play` drives an agent (act, initial_state)."""

    def __init__(self, model) -> None:
        self.model = model
        self.hidden = model.policy.lstm_actor.hidden_size
        self.layers = model.policy.lstm_actor.num_layers

    def parameters(self):
        return iter([torch.zeros(1)])  # play() reads the device from here: sb3 runs on the CPU

    def initial_state(self, batch: int) -> LSTMState:
        zeros = torch.zeros(self.layers, batch, self.hidden)
        return LSTMState(zeros, zeros.clone())

    def act(self, observations: torch.Tensor, state: LSTMState, deterministic: bool):
        import numpy as np

        starts = np.zeros(len(observations), dtype=bool)  # play() resets ended rows itself, as zeros
        actions, (h, c) = self.model.predict(
            observations.numpy(), state=(state.h.numpy(), state.c.numpy()), episode_start=starts,
            deterministic=deterministic,
        )  # fmt: skip
        return torch.as_tensor(actions).long().view(len(observations), -1), LSTMState(
            torch.as_tensor(h), torch.as_tensor(c)
        )


def train_sb3(config, seed: int):
    """RecurrentPPO with the config's settings; its MMER (best mean of 100 training episodes)."""
    from gymnasium.wrappers import FlattenObservation
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from rnnkit.data.envs import make_env

    d, m, t = config.data, resolve_model(config), config.train
    env = make_vec_env(lambda: FlattenObservation(make_env(d.env)), n_envs=d.n_envs, seed=seed)

    class Best(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns, self.best = deque(maxlen=100), float("-inf")

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
            return True

        def _on_rollout_end(self) -> None:
            if self.returns:
                self.best = max(self.best, statistics.fmean(self.returns))

    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=d.rollout_steps, batch_size=t.batch_size * d.rollout_steps,
        n_epochs=t.epochs, learning_rate=t.optimizer.lr, gamma=d.gamma, gae_lambda=d.gae_lambda,
        clip_range=m.clip_epsilon, ent_coef=m.entropy_coef, vf_coef=m.value_coef,
        max_grad_norm=t.clip_grad_norm or 1e9, seed=seed, verbose=0,
        policy_kwargs={"lstm_hidden_size": m.hidden_size},
    )  # fmt: skip
    best = Best()
    model.learn(d.total_steps, callback=best)
    return model, best.best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="environment steps (default: each config's)")
    parser.add_argument("--cell", help="rnnkit's memory (default: the config's)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides of rnnkit's run"
    )
    parser.add_argument("--no-baseline", action="store_true", help="rnnkit only (e.g. to compare memories)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); seeds {args.seeds}")
    rows = []
    for name in args.envs:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                overrides = [
                    f"train.seed={seed}",
                    f"data.seed={seed}",
                    "train.progress=false",
                    f"out_dir={tmp}/run",
                ]
                overrides += [f"data.total_steps={args.steps}"] * bool(args.steps)
                overrides += [f"model.cell={args.cell}"] * bool(args.cell) + args.set
                config = load_run_config(ROOT / "configs" / f"rl_{name}.yaml", overrides)
                started = time.perf_counter()
                metrics = train_run(config, log=lambda _: None)
                ours_time = time.perf_counter() - started
                with open(Path(tmp) / "run" / "log.csv") as f:
                    mmer = max(float(r["episode_return"]) for r in csv.DictReader(f))
            ours = {p: metrics["policies"][p]["mean_return"] for p in ("sampled", "greedy", "random")}
            d, started = config.data, time.perf_counter()
            if args.no_baseline:
                sb3, sb3_mmer = {"sampled": float("nan"), "greedy": float("nan")}, float("nan")
            else:
                model, sb3_mmer = train_sb3(config, seed)
                agent = SB3Agent(model)
                sb3 = {
                    p: statistics.fmean(play(agent, d, d.eval_episodes, p)["returns"])
                    for p in ("sampled", "greedy")
                }
            sb3_time = time.perf_counter() - started
            row = (d.env, seed, ours, mmer, ours_time, sb3, sb3_mmer, sb3_time)
            rows.append(row)
            print(
                f"{d.env} seed {seed}: rnnkit {config.model['cell']} sampled {ours['sampled']:.3f} greedy "
                f"{ours['greedy']:.3f} MMER {mmer:.3f} ({ours_time:.0f} s) | RecurrentPPO sampled "
                f"{sb3['sampled']:.3f} greedy {sb3['greedy']:.3f} MMER {sb3_mmer:.3f} ({sb3_time:.0f} s) | "
                f"random {ours['random']:.3f}",
                flush=True,
            )
    print(f"\nmean over seeds {args.seeds}, {config.data.total_steps} environment steps each")
    print(
        "| environment | rnnkit sampled | greedy | MMER | RecurrentPPO sampled | greedy | MMER | random | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for env in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == env]
        cells = [
            statistics.fmean(f(r) for r in mine)
            for f in (
                lambda r: r[2]["sampled"], lambda r: r[2]["greedy"], lambda r: r[3],
                lambda r: r[5]["sampled"], lambda r: r[5]["greedy"], lambda r: r[6], lambda r: r[2]["random"],
            )
        ]  # fmt: skip
        times = [statistics.fmean(r[i] for r in mine) for i in (4, 7)]
        shown = " | ".join(f"{c:.3f}" for c in cells)
        print(f"| {env} | {shown} | {times[0]:.0f} / {times[1]:.0f} |")


if __name__ == "__main__":
    main()
