"""Rules that hold for every input, checked on generated ones (hypothesis): the statistics against scipy and an
independent statement of Holm's method, the readers of untrusted files, sweep identity, the atomic writer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from aerun import atomic
from aerun import checkpoint as ckpt
from aerun.data.idx import read_idx
from aerun.errors import UserError
from aerun.stats import Spread, holm, welch
from aerun.sweep import identity, job_key

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

p_values = st.lists(st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)), max_size=12)


@SETTINGS
@given(p_values)
def test_holm_is_at_least_p_at_most_1_monotone_and_the_textbook_formula(ps):
    adjusted = holm(ps)
    tested = [(p, a) for p, a in zip(ps, adjusted) if p is not None]
    assert all(a is None for p, a in zip(ps, adjusted) if p is None)
    m = len(tested)
    ordered = sorted(p for p, _ in tested)
    for p, a in tested:
        assert p <= a <= 1.0
        # Holm (1979) as usually written: the largest over the p-values no larger than p of min(1, (m - rank) * p_j)
        expected = max(min(1.0, (m - rank) * q) for rank, q in enumerate(ordered) if q <= p)
        assert a == pytest.approx(expected, abs=1e-12)
    for (p1, a1), (p2, a2) in zip(sorted(tested), sorted(tested)[1:]):
        assert a1 <= a2  # a smaller p never gets a larger adjusted p


samples = st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=2, max_size=12)


@SETTINGS
@given(samples, samples)
def test_welch_agrees_with_scipys_unequal_variance_t_test(a, b):
    if np.std(a) < 1e-6 or np.std(b) < 1e-6:
        return  # without spread aerun reports an exact difference rather than a test (tests/test_stats.py)
    ours = welch(Spread.of(a), Spread.of(b))
    theirs = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours.difference == pytest.approx(np.mean(a) - np.mean(b), rel=1e-9, abs=1e-9)
    assert ours.p == pytest.approx(float(theirs.pvalue), rel=1e-6, abs=1e-12)
    assert ours.ci_low <= ours.difference <= ours.ci_high


@SETTINGS
@given(st.binary(max_size=64))
def test_the_idx_reader_answers_any_bytes_with_an_array_or_one_line(tmp_path, blob):
    path = tmp_path / "file-idx3-ubyte"
    path.write_bytes(blob)
    try:
        array = read_idx(path)
    except UserError as exc:
        assert "\n" not in str(exc) and "aerun data" in str(exc)
    else:  # only a well-formed header with exactly its bytes reads
        assert blob[:2] == b"\0\0" and array.size == math.prod(array.shape)


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> bytes:
    import torch

    from aerun.models import build

    model = build("mlp", code=4)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    config = {"model": {"name": "tiny"}, "dataset": {"name": "synthetic"}, "noise": {"name": "none", "level": 0.0}}
    ckpt.save(ckpt.make(model=model, preset="tiny", builder="mlp", args={"code": 4}, config=config, epoch=1, step=2,
                        optimizer=torch.optim.Adam(model.parameters())), path)
    return path.read_bytes()


@SETTINGS
@given(st.data())
def test_a_damaged_checkpoint_is_refused_as_damaged_never_read_as_another(tmp_path, saved_checkpoint, data):
    blob = bytearray(saved_checkpoint)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
        blob[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    path = tmp_path / "last.pt"
    path.write_bytes(bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob))
    try:
        read = ckpt.read(path)
    except (ckpt.DamagedCheckpoint, UserError) as exc:
        assert "\n" not in str(exc)
    else:  # a change that reached no content (the archive's padding): the same checkpoint, its checksum verified
        original = tmp_path / "original.pt"
        original.write_bytes(saved_checkpoint)
        assert read[ckpt.DIGEST] == ckpt.read(original)[ckpt.DIGEST] and read["epoch"] == 1


overrides = st.lists(st.sampled_from(["model=shallow", "model=deep", "model.hidden=8", "model.hidden=16", "seed=1",
                                      "seed=2", "epochs=3", "device=cpu", "sparsity=1e-3", "hydra.run.dir=x",
                                      "+extra=1", "noise=gaussian"]), max_size=8)


@SETTINGS
@given(overrides, st.randoms())
def test_a_jobs_identity_ignores_the_order_of_its_overrides(jobs, rng):
    # the last of each key wins in Hydra: shuffling keeps, for each key, its last value last
    last = {o.split("=", 1)[0].lstrip("+~"): o for o in jobs}
    shuffled = list(last.values())
    rng.shuffle(shuffled)
    assert job_key(jobs) == job_key(shuffled) and identity(jobs) == identity(shuffled)
    assert not any(o.startswith(("epochs=", "device=", "hydra.")) for o in identity(jobs))


@SETTINGS
@given(st.binary(max_size=4096), st.binary(max_size=4096), st.integers(min_value=0, max_value=4096))
def test_the_atomic_writer_leaves_the_old_file_or_the_new_one_never_a_mix(tmp_path, old, new, fail_at):
    path = tmp_path / "file.bin"
    path.write_bytes(old)

    class Interrupted(Exception):
        pass

    fails = fail_at < len(new)
    try:
        with atomic.replacing(path, "wb") as f:
            f.write(new[:fail_at] if fails else new)
            if fails:
                raise Interrupted  # a failure part-way through the write: a full disk, a kill
    except Interrupted:
        pass
    assert path.read_bytes() == (old if fails else new)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left
