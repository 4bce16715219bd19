"""The likelihood-ratio attack: slow references for its pieces, behaviour on planted data."""

from __future__ import annotations

import statistics
from collections import Counter

import numpy as np
import pytest
from scipy.stats import norm

from recforget import ALS, Interactions
from recforget.evaluate.lira import (
    Shadows,
    balanced_halves,
    calibrated_scores,
    lira_rows,
    lira_statistics,
    matched_non_members,
    shadow_data,
    train_shadows,
    user_lira_rows,
)
from recforget.models.base import clone


# ---------------------------------------------------------------------- references
def _ref_lira(scores, keep, observed, variance):
    """Pair by pair in plain Python with scipy.stats.norm (Carlini et al., online/offline)."""
    K, n = len(scores), len(scores[0])
    ins = [[scores[k][j] for k in range(K) if keep[k][j]] for j in range(n)]
    outs = [[scores[k][j] for k in range(K) if not keep[k][j]] for j in range(n)]
    if variance == "global":
        v_in = statistics.mean(statistics.variance(x) for x in ins if len(x) > 1)
        v_out = statistics.mean(statistics.variance(x) for x in outs if len(x) > 1)
        var_in, var_out = [v_in] * n, [v_out] * n
    else:
        var_in = [statistics.variance(x) for x in ins]
        var_out = [statistics.variance(x) for x in outs]
    online, offline_cdf = [], []
    for j in range(n):
        mi, mo = statistics.mean(ins[j]), statistics.mean(outs[j])
        si, so = var_in[j] ** 0.5, var_out[j] ** 0.5
        online.append(norm.logpdf(observed[j], mi, si) - norm.logpdf(observed[j], mo, so))
        offline_cdf.append(norm.cdf(observed[j], mo, so))  # 1 - Pr[Z > obs], Z ~ N(mo, so^2)
    return online, offline_cdf


@pytest.mark.parametrize("variance", ["global", "per-pair"])
def test_lira_statistics_match_pair_by_pair_reference(rng, variance):
    K, n = 6, 5
    keep = balanced_halves(K, n, rng)
    S = rng.normal(0, 1, (K, n)) + 0.8 * keep
    obs = rng.normal(0.3, 1, n)
    got = lira_statistics(S, keep, obs, variance=variance)
    online, offline_cdf = _ref_lira(S.tolist(), keep.tolist(), obs.tolist(), variance)
    np.testing.assert_allclose(got["online"], online, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(norm.cdf(got["offline"]), offline_cdf, rtol=1e-10, atol=1e-12)


def test_lira_statistics_with_uneven_counts_match_reference(rng):
    # not a balanced split: 1..4 IN observations per pair (global variance skips singletons)
    keep = np.array([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]], bool)
    S = rng.normal(0, 1, keep.shape)
    obs = rng.normal(0, 1, keep.shape[1])
    got = lira_statistics(S, keep, obs, variance="global")
    online, offline_cdf = _ref_lira(S.tolist(), keep.tolist(), obs.tolist(), "global")
    np.testing.assert_allclose(got["online"], online, rtol=1e-10)
    np.testing.assert_allclose(norm.cdf(got["offline"]), offline_cdf, rtol=1e-10)


def test_lira_statistics_need_in_and_out_observations():
    keep = np.array([[True, True], [False, True]])
    S = np.zeros((2, 2))
    with pytest.raises(ValueError, match="IN and"):
        lira_statistics(S, keep, np.zeros(2))
    with pytest.raises(ValueError, match="2\\+ IN"):
        lira_statistics(
            S, np.array([[True, True], [False, False]]), np.zeros(2), variance="per-pair"
        )
    with pytest.raises(ValueError, match="variance"):
        lira_statistics(S, keep, np.zeros(2), variance="pooled")
    with pytest.raises(ValueError, match="4\\+ shadows"):  # 2 shadows: one IN, one OUT each
        lira_statistics(S, ~np.eye(2, dtype=bool), np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        lira_statistics(np.full((2, 2), np.nan), ~np.eye(2, dtype=bool), np.zeros(2))


def test_balanced_halves(rng):
    keep = balanced_halves(8, 500, rng)
    assert keep.shape == (8, 500) and np.all(keep.sum(axis=0) == 4)
    assert 0.4 < keep.mean(axis=1).min() and keep.mean(axis=1).max() < 0.6
    with pytest.raises(ValueError, match="even"):
        balanced_halves(3, 5, rng)


def test_calibrated_scores_match_row_by_row_reference(small_data):
    model = ALS(4, iterations=5, random_state=0).fit(small_data)
    uid, iid = small_data.users.ids, small_data.items.ids
    pairs = [(uid[u], iid[i]) for u, i in [(0, 1), (3, 0), (0, 7), (29, 19), (3, 3)]]
    std = calibrated_scores(model, pairs, "standardised", batch_size=2)
    rank = calibrated_scores(model, pairs, "rank")
    raw = calibrated_scores(model, pairs, "raw")
    for j, (u, i) in enumerate(pairs):
        row = model.score([u] * len(iid), iid.tolist())
        own = model.score([u], [i])[0]
        assert raw[j] == pytest.approx(own)  # float32 factors: scores agree to ~1e-7
        assert std[j] == pytest.approx((own - row.mean()) / row.std(), rel=1e-4, abs=1e-5)
        q = (np.sum(row < own) + 0.5 * np.sum(row == own)) / len(row)
        assert rank[j] == pytest.approx(norm.ppf(q), rel=1e-9)
    assert calibrated_scores(model, pairs, "auto") == pytest.approx(std)
    with pytest.raises(ValueError, match="transform"):
        calibrated_scores(model, pairs, "probit")


def test_shadow_data_adds_pairs_and_keeps_vocabularies(small_data):
    R = small_data.to_csr().toarray()
    free = np.argwhere(R == 0)[:3]
    uid, iid = small_data.users.ids, small_data.items.ids
    pairs = [(uid[u], iid[i]) for u, i in free]
    out = shadow_data(small_data, pairs, np.array([1.0, 2.0, 3.0]))
    expect = R.copy()
    expect[free[:, 0], free[:, 1]] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(out.to_csr().toarray(), expect)
    assert out.users == small_data.users and out.items == small_data.items
    taken = (uid[0], iid[small_data.indices[0]])
    with pytest.raises(ValueError, match="already in the base"):
        shadow_data(small_data, [taken], np.ones(1))


def test_matched_non_members_follow_the_members_users():
    r = np.random.default_rng(1)
    R = (r.random((60, 80)) < 0.3).astype(float)
    data = Interactions.from_csr(R)
    train = data.select(r.random(data.nnz) < 0.8)
    test = data.drop_pairs(_pairs(train))
    pos = r.choice(train.nnz, 40, replace=False)
    members = [_pairs(train)[p] for p in pos]
    non = matched_non_members(train, test, members, 0)
    assert len(non) == len(members) and len(set(non)) == len(non)
    t = set(_pairs(test))
    assert all(p in t for p in non)  # held-out positives, never training data
    want = Counter(u for u, _ in members)
    have = Counter(u for u, _ in non)
    avail = Counter(u for u, _ in t)
    for u, w in want.items():  # per user: the members' count where the user has enough
        assert have[u] >= min(w, avail[u])
    short = sum(max(0, w - avail[u]) for u, w in want.items())
    assert short > 0  # this data exercises the fill-up from other users
    assert sum(have[u] - min(w, avail[u]) for u, w in want.items()) == short
    assert set(have) <= set(want)


def _pairs(data: Interactions) -> list[tuple]:
    u = data.users.ids[data.row_of_entry].tolist()
    return list(zip(u, data.items.ids[data.indices].tolist(), strict=True))


# ---------------------------------------------------------------------- planted data
def _planted(seed=0, n_users=200, n_items=150, density=0.12, n=300):
    """Random (structureless) data: nothing generalises, so only memorisation shows."""
    r = np.random.default_rng(seed)
    R = (r.random((n_users, n_items)) < density).astype(float)
    data = Interactions.from_csr(R)
    pos = r.choice(data.nnz, n, replace=False)
    members = [_pairs(data)[p] for p in np.sort(pos)]
    free = np.argwhere(R == 0)
    pick = free[np.sort(r.choice(len(free), n, replace=False))]
    non = [(int(a), int(b)) for a, b in pick]
    return data, members, non


@pytest.fixture(scope="module")
def als_attack():
    data, members, non = _planted()
    original = ALS(32, regularization=0.01, alpha=40.0, iterations=8, random_state=0).fit(data)
    never = clone(original).fit(data.drop_pairs(members))  # never saw the candidates
    res = lira_rows(original, {"never": never}, members=members, non_members=non, n_shadows=8)
    return res, original, members, non


def test_lira_finds_members_of_an_overfitted_model(als_attack):
    res = als_attack[0]
    for variant, floor in (("online", 0.8), ("offline", 0.5)):
        m = res["rows"]["original"][variant]
        assert m["tpr@1%fpr"] > floor, (variant, m)
        assert m["tpr@1%fpr_ci"][0] > floor - 0.2
        assert m["auc"] > 0.95
    assert res["n_members"] == res["n_non_members"] == 300 and res["n_shadows"] == 8


def test_lira_is_at_chance_on_a_model_that_never_saw_the_pairs(als_attack):
    res = als_attack[0]
    for variant in ("online", "offline"):
        m = res["rows"]["never"][variant]
        lo, hi = m["tpr@1%fpr_ci"]
        assert lo <= 0.01 <= hi + 0.01 and m["tpr@1%fpr"] < 0.05, (variant, m)
        lo, hi = m["auc_ci"]
        assert lo <= 0.5 <= hi, (variant, m)


def test_lira_rows_reuses_shadows_and_checks_candidates(als_attack):
    _, original, members, non = als_attack
    base = original.seen_.drop_pairs(members)
    shadows = train_shadows(original, base, members + non, n_shadows=4, random_state=0)
    again = lira_rows(
        original, {}, members=members, non_members=non, shadows=shadows, n_bootstrap=0
    )
    assert again["n_shadows"] == 4 and list(again["rows"]) == ["original"]
    with pytest.raises(ValueError, match="other candidates"):
        lira_rows(original, {}, members=members[:-1], non_members=non, shadows=shadows)
    with pytest.raises(ValueError, match="not training data"):
        lira_rows(original, {}, members=non[:3], non_members=non[3:6], n_shadows=2)
    with pytest.raises(ValueError, match="are training data"):
        lira_rows(original, {}, members=members[:3], non_members=members[3:6], n_shadows=2)


def test_lira_beats_a_raw_threshold_when_pairs_differ_in_difficulty():
    """Popular items score high whether or not the pair was trained on; calibration removes that."""
    r = np.random.default_rng(3)
    n_users, n_items = 300, 120
    pop = np.linspace(0.02, 0.6, n_items)  # item popularity ramps from rare to common
    R = (r.random((n_users, n_items)) < pop).astype(float)
    data = Interactions.from_csr(R)
    on = _pairs(data)
    rare = [p for p in on if pop[p[1]] < 0.15]  # members: rare items (large memorisation gap)
    members = [rare[j] for j in np.sort(r.choice(len(rare), 200, replace=False))]
    free = np.argwhere(R == 0)
    common = free[pop[free[:, 1]] > 0.4]  # non-members: common items (high scores anyway)
    pick = common[np.sort(r.choice(len(common), 200, replace=False))]
    non = [(int(a), int(b)) for a, b in pick]
    original = ALS(16, regularization=1.0, alpha=5.0, iterations=10, random_state=0).fit(data)
    res = lira_rows(original, {}, members=members, non_members=non, n_shadows=8, n_bootstrap=0)
    row = res["rows"]["original"]
    assert row["score"]["auc"] < 0.6  # a raw threshold sees little
    assert row["online"]["auc"] > 0.9 and row["online"]["tpr@1%fpr"] > 0.3


@pytest.mark.torch
def test_lira_on_an_overfitted_gmf():
    pytest.importorskip("torch")
    from recforget.models.ncf import NCF

    data, members, non = _planted(seed=1, n_users=120, n_items=100, density=0.1, n=200)
    gmf = NCF("gmf", 32, epochs=20, lr=0.05, weight_decay=0.0, negatives=2, batch_size=1024,
              num_threads=1, random_state=0).fit(data)  # fmt: skip
    never = clone(gmf).fit(data.drop_pairs(members))
    res = lira_rows(gmf, {"never": never}, members=members, non_members=non, n_shadows=4)
    assert res["transform"] == "logit"
    orig, nev = res["rows"]["original"]["online"], res["rows"]["never"]["online"]
    assert orig["tpr@1%fpr"] > 0.5 and orig["auc"] > 0.9, orig
    assert nev["auc_ci"][0] <= 0.5 <= nev["auc_ci"][1] and nev["tpr@1%fpr"] < 0.06, nev


def test_user_lira_separates_members_and_not_a_model_without_them():
    r = np.random.default_rng(5)
    n_users, n_items = 160, 90
    # two taste blocks: users prefer one half of the items
    taste = r.integers(0, 2, n_users)
    p = np.where((np.arange(n_items)[None, :] < n_items // 2) == (taste[:, None] == 0), 0.3, 0.04)
    R = (r.random((n_users, n_items)) < p).astype(float)
    full = Interactions.from_csr(R)
    ids = full.users.ids
    members, non = ids[:20].tolist(), ids[20:40].tolist()
    train = full.drop_users(non)
    original = ALS(16, regularization=0.1, alpha=20.0, iterations=10, random_state=0).fit(train)
    never = clone(original).fit(train.drop_users(members))
    res = user_lira_rows(
        original,
        {"never": never},
        member_users=members,
        non_member_users=non,
        histories=full,
        statistics=("miars", "fold-in"),
        n_shadows=4,
        k=10,
    )
    assert res["level"] == "user" and res["n_members"] == 20
    for variant in ("online", "fold-in online"):
        orig = res["rows"]["original"][variant]
        assert orig["auc"] > 0.7 and orig["auc_ci"][0] > 0.5, (variant, orig)
        lo, hi = res["rows"]["never"][variant]["auc_ci"]
        assert lo <= 0.5 <= hi, variant
    with pytest.raises(ValueError, match="non-member users are training users"):
        user_lira_rows(original, {}, member_users=members, non_member_users=members, histories=full)


def test_fold_in_scores_match_a_dense_ridge_reference(small_data):
    """Implicit ALS fold-in: x = (Y'CY + lambda I)^-1 Y'Cp per user, in dense numpy."""
    from recforget.evaluate.lira import fold_in_scores

    model = ALS(3, regularization=0.5, alpha=4.0, iterations=4, random_state=0).fit(small_data)
    iid = small_data.items.ids
    fold_rows = np.array([0, 0, 0, 1, 1])
    fold_items = iid[[1, 4, 7, 0, 2]]
    held_rows = np.array([0, 1, 1])
    held_items = iid[[3, 5, 9]]
    got = fold_in_scores(model, fold_rows, fold_items, held_rows, held_items)
    Y = model.item_factors_.astype(np.float64)
    expect = []
    for r in range(2):
        c = np.ones(len(iid))
        p = np.zeros(len(iid))
        on = model.items_.index(fold_items[fold_rows == r])
        c[on], p[on] = 1 + 4.0, 1.0
        x = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.5 * np.eye(3), Y.T @ (c * p))
        s = Y @ x
        z = (s - s.mean()) / s.std()
        expect.append(z[model.items_.index(held_items[held_rows == r])].mean())
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="implicit-feedback ALS"):
        fold_in_scores(object(), fold_rows, fold_items, held_rows, held_items)


def test_shadows_round_trip_through_arrays_and_json(als_attack, tmp_path):
    _, original, members, non = als_attack
    base = original.seen_.drop_pairs(members)
    shadows = train_shadows(original, base, members + non, n_shadows=4, random_state=0)
    back = Shadows.load(shadows.save(tmp_path / "s"))
    assert back.candidates == shadows.candidates
    np.testing.assert_array_equal(back.keep, shadows.keep)
    np.testing.assert_array_equal(back.scores, shadows.scores)
    assert (back.transform, back.seeds) == (shadows.transform, shadows.seeds)
    np.savez(tmp_path / "s" / "shadows.npz", keep=back.keep[:, 1:], scores=back.scores[:, 1:])
    with pytest.raises(ValueError, match="does not match the candidates"):
        Shadows.load(tmp_path / "s")


def test_reused_shadows_give_the_fresh_run_its_bootstrap_too(als_attack):
    res, original, members, non = als_attack
    again = lira_rows(
        original, {}, members=members, non_members=non, shadows=res["shadows"], random_state=0
    )
    assert again["rows"]["original"] == res["rows"]["original"]
