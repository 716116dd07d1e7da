"""Guidance at inference: the rep's recommended next act from a policy trained on the view "model".

A guidance run trained with ``observation="model"`` reads the conversion model's encoder state, the state a
`Scorer` session holds after every turn and the batch path computes for every turn of an archive. Both apply the
same function, `guidance_arrays`, to that state, and turn its rows into `Guidance` with `as_guidance`, so a live
session and `salesrl score --guidance` recommend the same act (tested).

What it is: the act the policy learned **in simulation** would play next (greedy), its probability under the
policy, and ``sale_if``: the critic's estimate, per candidate act, of the return if the rep plays it now and then
follows the policy (the conversion probability when the run had no time cost; minus the expected time cost
otherwise). The policy was trained on states at the end of each exchange (after the customer's answer), so its
recommendation is meant to be read after a customer turn. Nothing here has been validated on real calls:
docs/guidance.md says what a simulated policy does and does not tell about a deployment.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from salesrl_jax.env.environment import ACTIONS
from salesrl_jax.guidance.ppo import make_apply

LEARNED_IN = "simulation"


@dataclasses.dataclass(frozen=True)
class Guidance:
    """The recommendation after one turn (see the module docstring)."""

    next_act: str  # the policy's most probable act: one of `salesrl_jax.env.environment.ACTIONS`
    act_probability: float  # its probability under the policy
    sale_if: dict[str, float]  # per candidate act: the estimated return (the conversion probability) if played now
    learned_in: str = LEARNED_IN


def guidance_arrays(graphdef, params, states: jnp.ndarray) -> jnp.ndarray:
    """``[..., 2 A]``: the policy's act probabilities then the action values, from encoder states ``[..., S]``."""
    out = make_apply(graphdef)(params, states)
    return jnp.concatenate([jax.nn.softmax(out.logits, axis=-1), out.q], axis=-1)


def as_guidance(row: np.ndarray) -> Guidance:
    """A `Guidance` from one row of `guidance_arrays`."""
    a = len(ACTIONS)
    probs, q = row[:a], row[a:2 * a]
    best = int(np.argmax(probs))
    return Guidance(ACTIONS[best], round(float(probs[best]), 6),
                    {name: round(float(v), 6) for name, v in zip(ACTIONS, q)})


def check_guidance_for(policy, model) -> None:
    """Refuse a guidance run that did not read ``model``'s encoder state (`salesrl_jax.guidance.train.TrainedPolicy`,
    `salesrl_jax.run.trained_model.TrainedModel`)."""
    if policy.config.observation != "model":
        raise ValueError(f"{policy.workdir}: this guidance run's policy reads the dialogue acts (observation "
                         f"{policy.config.observation!r}), which live text does not give; train one with "
                         "observation model on this conversion model (configs/guidance/model_view.py)")
    if policy.model_params_sha256 != model.params_digest:
        raise ValueError(f"{policy.workdir}: the policy was trained on the encoder state of the model at "
                         f"{policy.config.model} (parameters {str(policy.model_params_sha256)[:12]}), not on "
                         f"{model.directory} (parameters {model.params_digest[:12]}); train a guidance run on "
                         "this model (--model)")
