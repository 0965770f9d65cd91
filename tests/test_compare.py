"""bench.compare and bench.peers.common without the peers' libraries: the summary arithmetic, the
skipping of a missing peer, a failing run, the shared initial weights, and one short real run."""

import json

import numpy as np
import pytest

from bench import compare, profile_step
from bench.peers import common
from tests.helpers import write_idx
from fastnet import data
from fastnet.recipe import Recipe, new_state


def metrics(epochs, acc=0.85, cpu=1.0, wall=2.0):
    """A run's metrics as run_once returns them, with made-up numbers."""
    return {"epoch_seconds": epochs, "test_accuracy": acc, "process_cpu_seconds": cpu,
            "process_wall_seconds": wall, "steps_per_epoch": [469] * len(epochs)}


def test_warm_epochs_leave_out_each_runs_first_epoch_unless_it_is_the_only_one():
    assert compare.warm_epochs([metrics([9, 1, 2]), metrics([8, 3])]) == [1, 2, 3]
    assert compare.warm_epochs([metrics([5]), metrics([7])]) == [5, 7]


def test_summary_row_median_range_floor_ratios_speedup_accuracy_cores():
    runs = [metrics([9.0, 1.0, 3.0], acc=0.84, cpu=1.0), metrics([9.0, 2.0, 4.0], acc=0.86, cpu=3.0)]
    row = compare.summarise("peer", runs, floor=0.5, floor_one=1.25, reference=1.25)
    assert (row["epoch_median"], row["epoch_min"], row["epoch_max"]) == (2.5, 1.0, 4.0)
    assert row["x_floor"] == pytest.approx(5.0)
    assert row["x_floor_one_thread"] == pytest.approx(2.0)
    assert row["speedup_of_fastnet"] == pytest.approx(2.0)  # the peer takes twice fastnet's time
    assert row["test_accuracy"] == pytest.approx(0.85)
    assert row["cores"] == pytest.approx(1.0)  # median of 1.0 / 2.0 and 3.0 / 2.0
    assert row["steps_per_epoch"] == [469]
    assert compare.summarise("x", runs, 0.5, 1.25, None)["speedup_of_fastnet"] is None


def test_table_text_has_a_line_per_row_with_its_numbers():
    row = compare.summarise("jax-scan", [metrics([1.0, 0.5])], 0.25, 0.4, 0.25)
    lines = compare.format_table([row], 2, 0.25, 0.4)
    assert "2 threads" in lines[0] and "0.250 s" in lines[0] and "0.400 s" in lines[0]
    assert lines[2].split()[:4] == ["jax-scan", "0.500", "s", "(0.50-0.50)"]
    assert len(lines[2]) == len(lines[1])  # columns under their headings
    assert "2.00x" in lines[2] and "0.8500" in lines[2]


def test_a_peer_whose_library_is_missing_is_skipped_with_one_line(monkeypatch, capsys):
    ghost = compare.Contender("bench.peers.ghost", needs=("numpy", "no_such_library_for_fastnet"))
    monkeypatch.setitem(compare.CONTENDERS, "ghost", ghost)
    ok, skipped = compare.available(["fastnet-numpy", "ghost"])
    assert ok == ["fastnet-numpy"]
    assert skipped == {"ghost": "no_such_library_for_fastnet not installed: skipped"}
    assert capsys.readouterr().err == "ghost: no_such_library_for_fastnet not installed: skipped\n"


def test_a_failing_run_is_reported_and_left_out_of_later_rounds(capsys):
    calls = []
    entries = [("broken", ["-c", "import no_such_library_for_fastnet"])]
    results, failed = compare.round_robin(entries, 2, lambda: calls.append(1))
    assert results == {"broken": []}
    assert "no_such_library_for_fastnet" in failed["broken"]
    assert len(calls) == 3  # the floor: before the first round and after each
    assert capsys.readouterr().err.count("broken: failed:") == 1


def test_peers_get_the_initial_weights_and_fastnet_its_layers():
    peer = compare.CONTENDERS["jax-scan"].argv(2, 32, 512, 1, "/tmp/init.npz")
    assert peer[:3] == ["-m", "bench.peers.jax_mlp", "--scan"] and peer[-2:] == ["--init", "/tmp/init.npz"]
    assert "--batch-size" in peer and peer[peer.index("--batch-size") + 1] == "32"
    ours = compare.CONTENDERS["fastnet"].argv(2, 128, 512, 2, None, "/data")
    assert ours[ours.index("--layers") + 1] == "784,512,10" and ours[-2:] == ["--data-dir", "/data"]
    assert {"--preset", "seed", "--dtype", "float32"} <= set(ours)


def test_every_contender_module_exists():
    from importlib import util

    for c in compare.CONTENDERS.values():
        assert util.find_spec(c.module) is not None, c.module


def test_the_peers_start_from_fastnets_weights_and_draw_its_orders(tmp_path):
    common.write_init(tmp_path / "init.npz", "784,16,10", seed=3)
    layers, rng = common.read_init(tmp_path / "init.npz")
    state = new_state(Recipe.preset("seed", layers=(784, 16, 10), seed=3), None, scaling="none")
    assert [W.shape for W, _ in layers] == [(784, 16), (16, 10)]
    for (W, b), W_ref, b_ref in zip(layers, state.model.W, state.model.b):
        assert W.dtype == np.float32 and np.array_equal(W, W_ref) and np.array_equal(b, b_ref)
    for _ in range(2):  # fastnet's training loop draws one permutation per epoch from state.rng
        assert np.array_equal(rng.permutation(1000), state.rng.permutation(1000))
    assert common.LR == 5e-4 and (common.BETA1, common.BETA2, common.EPS, common.BATCH) == (0.9, 0.999, 1e-8, 128)


def test_batches_keep_the_partial_last_one():
    sizes = [len(b) for b in common.batches(np.arange(60000), 128)]
    assert len(sizes) == 469 and sizes[-1] == 96 and set(sizes[:-1]) == {128}


def test_scores_are_mean_cross_entropy_and_accuracy():
    logits = np.array([[0.0, 0.0], [1000.0, 0.0], [0.0, 3.0]], np.float32)  # a huge logit must not overflow
    loss, acc = common.scores(logits, np.array([0, 1, 1]))
    assert loss == pytest.approx((np.log(2) + 1000 + np.log1p(np.exp(-3))) / 3)
    assert acc == pytest.approx(2 / 3)


@pytest.fixture
def small_fashion(tmp_path):
    """The first 1,000 training and 300 test images of Fashion-MNIST as an IDX directory."""
    directory = tmp_path / "data"
    directory.mkdir()
    for split, n in (("train", 1000), ("test", 300)):
        loaded = data.load("fashion-mnist", split)
        images, labels = loaded.images, loaded.labels
        names = data.SPLIT_FILES[split]
        write_idx(directory / names[0], images[:n].reshape(n, 28, 28))
        write_idx(directory / names[1], labels[:n])
    return directory


def test_one_short_run_writes_the_results_json(small_fashion, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(compare.CONTENDERS, "ghost", compare.Contender("bench.peers.ghost", needs=("no_such_lib",)))
    compare.main(["--only", "fastnet-numpy,ghost", "--epochs", "1", "--runs", "1", "--threads", "1", "--table",
                  "--data-dir", str(small_fashion), "--results", str(tmp_path / "results")])
    out = capsys.readouterr()
    assert "ghost: no_such_lib not installed: skipped" in out.err
    [path] = (tmp_path / "results").iterdir()
    assert path.name.startswith("compare-") and path.name.endswith("-threads1.json")
    result = json.loads(path.read_text())
    assert {"date", "command", "machine", "threads", "settings", "skipped", "table"} <= set(result)
    assert {"cpu", "avx512", "versions"} <= set(result["machine"]) and result["machine"]["versions"]["numpy"]
    assert result["skipped"] == {"ghost": "no_such_lib not installed: skipped"}
    assert result["training_images"] == 1000 and result["table"]["failed"] == {}
    [row] = result["table"]["rows"]
    assert row["contender"] == "fastnet-numpy" and row["speedup_of_fastnet"] is None
    assert row["steps_per_epoch"] == [] and len(row["runs"][0]["epoch_seconds"]) == 1
    assert 0.5 < row["test_accuracy"] <= 1  # 8 steps of the seed recipe on 1,000 images: ~0.6-0.7
    assert row["x_floor"] > 0 and row["cores"] > 0
    assert "fastnet-numpy" in out.out


def test_profile_step_times_every_pass_on_a_small_data_set(small_fashion, capsys):
    profile_step.main(["--threads", "1", "--rounds", "1", "--data-dir", str(small_fashion)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1 thread(s)")
    times = {line[:26].strip(): float(line[26:]) for line in lines[1:]}
    assert set(times) == {"whole step, one a call", "whole steps, 64 a call", "passes apart", "passes apart, no Adam", "gather alone",
                          "Adam alone, in cache", "floor (products alone)", "first layer", "rows", "bands + Adam"}
    assert all(t > 0 for t in times.values())  # each ran (timings are compared in benchmarks, never here)


@pytest.mark.slow
def test_whole_runs_time_a_first_run_with_empty_caches_and_a_later_one(small_fashion, tmp_path, capsys):
    """--whole: each run from exec to exit; the first with every compile and data cache in a fresh
    folder (so the decoded data is written there), the later one with the folder as the first left it."""
    compare.main(["--only", "fastnet-numpy,sklearn", "--epochs", "1", "--runs", "1", "--threads", "1", "--whole",
                  "--data-dir", str(small_fashion), "--results", str(tmp_path / "results")])
    [path] = (tmp_path / "results").iterdir()
    assert path.name.startswith("whole-")
    result = json.loads(path.read_text())
    assert "table" not in result and result["whole"]["failed"] == {}
    rows = {row["contender"]: row for row in result["whole"]["rows"]}
    assert set(rows) == {"fastnet-numpy", "sklearn"}
    for row in rows.values():
        assert row["first_median"] > 0 and row["later_median"] > 0 and 0.5 < row["test_accuracy"] <= 1
        assert len(row["runs"]["first"]) == len(row["runs"]["later"]) == 1
    assert "whole runs, 1 thread" in capsys.readouterr().out
