"""Observation view "model": the environment's encoder state is the Scorer's, and guidance at inference is the
same live and in batch."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from salesrl_jax.cli import main
from salesrl_jax.data.records import Turn
from salesrl_jax.env.environment import ACTIONS, make_params, reset, step
from salesrl_jax.features import turn_features
from salesrl_jax.guidance.bank import STAT_FIELDS, build_bank
from salesrl_jax.guidance.config import GuidanceConfig
from salesrl_jax.guidance.inference import check_guidance_for
from salesrl_jax.guidance.policies import scripted
from salesrl_jax.guidance.train import build_view, load_policy, split_run_spec, train_guidance
from salesrl_jax.guidance.views import FeatureCarry, model_view
from salesrl_jax.guidance.views import turn_features as jnp_turn_features
from salesrl_jax.infer.scorer import Scorer
from salesrl_jax.run.trained_model import TrainedModel
from salesrl_jax.sim.config import SimulatorConfig
from tests.conftest import scored_turns

SIM = SimulatorConfig(industries=("saas", "insurance", "retail_pos"))


def small(model) -> GuidanceConfig:
    return GuidanceConfig(observation="model", model=str(model), total_steps=32_768, num_envs=128, num_steps=16,
                          seeds=(0,), eval_conversations=2000, bank_variants=4, simulator=SIM)


def test_bank_has_every_act_rendered_and_summarised(tiny_trained):
    model = TrainedModel.load(tiny_trained)
    bank = build_bank(SIM, model.config.embedder.build(), variants=3)
    assert bank.rep_rows.shape == (3, 11, 3) and bank.customer_rows.shape == (3, 12, 7, 3)
    rows = np.concatenate([bank.rep_rows.ravel(), bank.customer_rows.ravel()])
    assert sorted(rows.tolist()) == list(range(len(bank.texts)))  # every utterance sits in exactly one slot
    assert bank.embeddings.shape == (len(bank.texts), model.identity.dim)
    first = turn_features.text_stats(bank.texts[0])
    assert bank.stats[0].tolist() == pytest.approx([float(getattr(first, f)) for f in STAT_FIELDS], abs=1e-6)
    # Deterministic: the same seed renders the same bank.
    assert build_bank(SIM, model.config.embedder.build(), variants=3).texts == bank.texts


def test_jnp_turn_features_equal_the_numpy_fold():
    texts = ["Hi Sam, this is Alex from Acme. Thanks for taking the time today.",
             "Honestly it sounds expensive, we're on a tight budget?", "What made you start looking?",
             "Sounds good, what are the next steps? Can we book it?", "Okay.", "Not sure. I'll think about it."]
    turns = [Turn("rep" if i % 2 == 0 else "customer", t, start_time=round(1.7 * i + 0.3 * (i > 2), 2),
                  duration=round(0.9 + 0.4 * i, 2)) for i, t in enumerate(texts)]
    expected = turn_features.conversation_features(turns)
    carry, got = FeatureCarry.zeros(), []
    for turn in turns:
        s = turn_features.text_stats(turn.text)
        stats = np.array([float(getattr(s, f)) for f in STAT_FIELDS], np.float32)
        carry, f = jnp_turn_features(carry, stats, np.bool_(turn.speaker == "customer"), np.float32(turn.start_time),
                                     np.float32(turn.duration))
        got.append(np.asarray(f))
    np.testing.assert_allclose(np.stack(got), expected, atol=2e-6)


def test_the_environment_state_is_the_scorer_sessions(tiny_trained):
    """Exchanges played in the environment, rendered to text and timed there, then read by a live `Scorer` session:
    after each customer turn the session holds the state the environment observed."""
    config = small(tiny_trained)
    params = make_params(SIM)
    view, model = build_view(config, params)
    bank = build_bank(SIM, model.config.embedder.build(), variants=config.bank_variants)
    scorer = Scorer(model, model.config.embedder.build())
    env_step, exchange = jax.jit(lambda k, s, a: step(k, s, a, params)), jax.jit(view.exchange)
    policy = scripted()
    compared = 0
    for conversation in range(3):
        key = jax.random.PRNGKey(conversation)
        _, state = reset(key, params)
        obs, view_state = view.reset(jax.random.fold_in(key, 1), state)
        session = scorer.session()
        for e in range(params.exchanges):
            action = policy.act(jax.random.fold_in(key, 100 + e), state, obs, None, params)
            _, after, _, done, info = env_step(jax.random.fold_in(key, 2 + e), state, action)
            obs, view_state, played = exchange(jax.random.fold_in(key, 200 + e), view_state, state.industry,
                                               state.level, action, info["customer_act"])
            for j, speaker in enumerate(("rep", "customer")):
                session.add_turn(speaker, bank.texts[int(played.rows[j])], float(played.start[j]),
                                 float(played.duration[j]))
            np.testing.assert_allclose(session.state, np.asarray(obs), atol=1e-4)
            compared += 1
            state = after
            if bool(done):
                break
    assert compared >= 6


@pytest.fixture(scope="module")
def guided(tiny_trained, tmp_path_factory):
    """A guidance run on the tiny model's encoder state, trained by the CLI."""
    workdir = tmp_path_factory.mktemp("guided") / "run"
    main(["guidance", "train", "--workdir", str(workdir), "--observation", "model", "--model", str(tiny_trained),
          "--total-steps", "32768", "--num-envs", "128", "--seeds", "0", "--eval-conversations", "2000",
          "--bank-variants", "4", "--simulator.industries", "saas", "insurance", "retail_pos"])
    return workdir


def test_a_model_view_run_records_its_model_and_ab_tests_its_policy(guided, tiny_trained):
    result = json.loads((guided / "result.json").read_text())
    model = TrainedModel.load(tiny_trained)
    assert result["obs_dim"] == model.config.model.state_dim
    assert result["model_params_sha256"] == model.params_digest
    ab = json.loads((guided / "ab" / "ab.json").read_text())
    assert any(name.startswith("learned") for name in ab["arms"])
    assert train_guidance(small(tiny_trained), guided).seconds == result["seconds"]  # finished: a no-op


def test_scorer_guidance_equals_the_batch_path(guided, tiny_trained, tiny_archive, tmp_path):
    """The live session's recommendation after every turn equals `salesrl score --guidance`'s row."""
    out = tmp_path / "scores.jsonl"
    main(["score", "--model", str(tiny_trained), "--data", str(tiny_archive), "--out", str(out), "--guidance",
          str(guided), "--workers", "1"])
    rows = scored_turns(type("R", (), {"outputs": {"turns": out}}))
    by_turn = {(r["conversation_id"], r["turn_index"]): r for r in rows}
    scorer = Scorer.load(tiny_trained, guidance=guided)
    opening = scorer.opening_guidance()
    assert opening.next_act in ACTIONS and opening.learned_in == "simulation"
    from salesrl_jax.data.readers import ArchiveReader

    checked = 0
    for conversation in list(ArchiveReader(tiny_archive))[:5]:
        session = scorer.session()
        for t, turn in enumerate(conversation.turns):
            live = session.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration).guidance
            row = by_turn[(conversation.id, t)]
            assert live.learned_in == "simulation"
            assert row["sim_sale_if"].keys() == live.sale_if.keys() == set(ACTIONS)
            np.testing.assert_allclose(list(row["sim_sale_if"].values()), list(live.sale_if.values()), atol=1e-4)
            assert row["sim_next_act_probability"] == pytest.approx(live.act_probability, abs=1e-4)
            if live.act_probability > 0.51:  # no near tie: the same act
                assert row["sim_next_act"] == live.next_act
            checked += 1
    assert checked > 20
    summary = [json.loads(line) for line in out.with_name("scores.conversations.jsonl").read_text().splitlines()]
    assert all(s["final_sim_next_act"] in ACTIONS for s in summary)


def test_guidance_and_confidence_together_each_read_their_own_values(guided, tiny_trained, tiny_archive, tmp_path):
    """With a confidence fit the streaming step returns the state distance after the guidance: the recommendation is
    the one a session without confidence gives, and the confidence the one a session without guidance gives."""
    import shutil

    from salesrl_jax.data.readers import ArchiveReader
    from salesrl_jax.eval.confidence_fit import fit_confidence

    run = tmp_path / "run"
    shutil.copytree(tiny_trained, run)
    fit_confidence(run)
    both = Scorer.load(run, guidance=guided)
    plain = Scorer.load(run, guidance=guided, confidence=False)
    unguided = Scorer.load(run)
    conversation = next(iter(ArchiveReader(tiny_archive)))
    with_confidence, without, alone = both.session(), plain.session(), unguided.session()
    for turn in conversation.turns:
        a = with_confidence.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        b = without.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        c = alone.add_turn(turn.speaker, turn.text, turn.start_time, turn.duration)
        assert (a.confidence, a.familiarity, a.p_low, a.p_high) == pytest.approx(
            (c.confidence, c.familiarity, c.p_low, c.p_high), abs=1e-6)  # the distance read from its own place
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        assert a.guidance.next_act == b.guidance.next_act
        np.testing.assert_allclose(list(a.guidance.sale_if.values()), list(b.guidance.sale_if.values()), atol=1e-6)
        assert a.confidence is not None and 0 <= a.p_low <= a.probability <= a.p_high <= 1
        assert b.confidence is None


def test_archive_scorers_with_one_guidance_policy_share_their_predictor(guided, tiny_trained):
    """A second load of the same model and policy in one process reuses the compiled predictor (`shared_predict`,
    keyed on the policy's structure), as the scorer without guidance does."""
    from salesrl_jax.infer.archive import ChunkScorer

    first = ChunkScorer.load(tiny_trained, quantized=False, with_confidence=True, rows=512, guidance=str(guided))
    again = ChunkScorer.load(tiny_trained, quantized=False, with_confidence=True, rows=512, guidance=str(guided))
    assert first.guidance is not None and again.predict is first.predict
    plain = ChunkScorer.load(tiny_trained, quantized=False, with_confidence=True, rows=512)
    assert plain.predict is not first.predict  # the guided program returns more: not the plain one


def test_an_ab_test_on_other_industries_than_the_views_is_refused(guided):
    from salesrl_jax.guidance.rollout import run_episodes
    from salesrl_jax.guidance.train import load_learned

    policy = load_learned(guided)
    assert run_episodes(policy, jax.random.PRNGKey(0), 64, make_params(SIM)).sale.shape == (64,)
    with pytest.raises(ValueError, match="rendered for the industries"):
        run_episodes(policy, jax.random.PRNGKey(0), 64, make_params(SimulatorConfig(industries=("saas",))))


def test_a_view_on_a_model_or_bank_it_cannot_read_is_refused(tiny_trained):
    model = TrainedModel.load(tiny_trained)
    bank = build_bank(SIM, model.config.embedder.build(), variants=1)
    with pytest.raises(ValueError, match="industries"):
        model_view(model, bank, make_params(SimulatorConfig(industries=("saas", "insurance"))))
    model.config = dataclasses.replace(model.config, model=dataclasses.replace(model.config.model,
                                                                               feed_prediction=True))
    with pytest.raises(ValueError, match="feed_prediction"):
        model_view(model, bank, make_params(SIM))


def test_a_run_and_its_seed_are_named_dir_at_k(guided, tiny_trained):
    assert split_run_spec("runs/g") == ("runs/g", 0) and split_run_spec("runs/g@2") == ("runs/g", 2)
    with pytest.raises(ValueError, match="seed index"):
        split_run_spec("runs/g@last")
    assert Scorer.load(tiny_trained, guidance=f"{guided}@0").guidance.obs_dim == 16
    with pytest.raises(ValueError, match="out of range"):
        Scorer.load(tiny_trained, guidance=f"{guided}@1")


def test_guidance_from_another_model_or_from_the_acts_view_is_refused(guided, tiny_trained):
    policy = load_policy(guided)
    model = TrainedModel.load(tiny_trained)
    check_guidance_for(policy, model)
    with pytest.raises(ValueError, match="not on"):
        check_guidance_for(dataclasses.replace(policy, model_params_sha256="0" * 64), model)
    acts = dataclasses.replace(policy, config=dataclasses.replace(policy.config, observation="acts", model=None))
    with pytest.raises(ValueError, match="dialogue acts"):
        check_guidance_for(acts, model)
    with pytest.raises(ValueError, match="needs model"):
        GuidanceConfig(observation="model")
