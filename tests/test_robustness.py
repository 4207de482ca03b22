"""capsviz.analysis.robustness and `python -m capsviz robustness`: readouts, the measurement, the report, the CLI."""

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from capsviz.analysis import affine, robustness
from capsviz.checkpoint import save_checkpoint
from capsviz.data import load_mnist, to_float
from capsviz.files import sha256_of
from capsviz.train import evaluate

from conftest import OFFLINE_ENV


def test_each_readout_is_what_a_run_with_that_many_iterations_predicts(tiny_models):
    capsnet, cnn = tiny_models
    x = torch.rand(6, 1, 28, 28)
    assert robustness.readouts(capsnet) == [1, 3, 5] and robustness.readouts(cnn) == [None]
    predicted = robustness.predictions(capsnet, x, [1, 3, 5])  # (3, 6)
    with torch.no_grad():
        for row, r in enumerate([1, 3, 5]):
            assert torch.equal(predicted[row], capsnet.scores(x, routing_iters=r).argmax(1))
        assert torch.equal(robustness.predictions(cnn, x, [None])[0], cnn.scores(x).argmax(1))


def test_measure_agrees_with_evaluate_and_with_a_hand_run_of_the_transforms(tiny_models, synthetic_root):
    capsnet, cnn = tiny_models
    split = load_mnist(synthetic_root, train=False).head(6)
    for model in (capsnet, cnn):
        result = robustness.measure(model, split, seed=3, batch_size=4)  # batches must not change the draws
        main = result["3" if model is capsnet else "none"]
        assert main["mnist"] == pytest.approx(evaluate(model, split)[0])
        x = to_float(split.images)
        with torch.no_grad():
            moved = affine.affine_set(x, seed=3)
            hits = (model.scores(moved).argmax(1) == split.labels).numpy()
            assert main["affine"] == pytest.approx(hits.mean())
            assert np.array_equal(robustness.unpack(main["affine_correct"], len(split)), hits)  # image by image
            turned = affine.warp(x, affine.sweep_maps("rotation", -60.0, len(split)))
            assert main["rotation"][0] == pytest.approx(
                (model.scores(turned).argmax(1) == split.labels).double().mean()
            )
        assert [len(main[name]) for name in affine.SWEEPS] == [len(v) for v in affine.SWEEPS.values()]


def test_sweeps_read_only_the_first_sweep_limit_images(tiny_models, synthetic_root):
    capsnet, _ = tiny_models
    split = load_mnist(synthetic_root, train=False).head(7)
    limited = robustness.measure(capsnet, split, batch_size=3, sweep_limit=4)["3"]  # the limit splits a batch
    whole, first = robustness.measure(capsnet, split)["3"], robustness.measure(capsnet, split.head(4))["3"]
    assert (limited["mnist"], limited["affine"]) == (whole["mnist"], whole["affine"])
    for name in affine.SWEEPS:
        assert limited[name] == pytest.approx(first[name])
    result = robustness.report([], split, seed=0, command="c", hardware="CPU (test, 1 thread)", sweep_limit=4)
    assert result["sweep_images"] == 4 and result["test_images"] == 7


def test_markdown_shows_every_model_and_readout(tiny_models, synthetic_root):
    capsnet, cnn = tiny_models
    split = load_mnist(synthetic_root, train=False).head(4)
    entries = [
        robustness.model_entry(capsnet, {"name": "caps"}, "caps.safetensors", robustness.measure(capsnet, split)),
        robustness.model_entry(cnn, {}, "runs/cnn.safetensors", robustness.measure(cnn, split)),
    ]
    result = robustness.report(
        entries, split, seed=0, command="python -m capsviz robustness", hardware="CPU (test, 1 thread)"
    )
    table = robustness.markdown(result)
    for routing in "135":
        assert f"| caps | capsnet | {entries[0]['params']:,} | {routing} |" in table
    assert f"| cnn | cnn | {entries[1]['params']:,} | - |" in table and "4 MNIST test images" in table
    assert result["affine_shrunk"] == 4  # the synthetic digits' noise inks the whole frame: all are shrunk
    assert set(robustness.files(result)) == {"robustness.md", "robustness.json", "sweeps.png"}
    assert [row["against"] for row in robustness.comparisons(result["models"], 4)] == ["cnn", "routing", "routing"]
    row = robustness.comparisons(result["models"], 4)[0]
    capsnet_hits = robustness.unpack(entries[0]["affine_correct"], 4)
    assert row == {"against": "cnn", "a": "caps r=3", "b": "cnn"} | robustness.paired(
        capsnet_hits, robustness.unpack(entries[1]["affine_correct"], 4)
    )
    cells = [f"{row['accuracy_a']:.2%}", f"{row['accuracy_b']:.2%}", str(row["only_a"]), str(row["only_b"])]
    assert f"| caps r=3 | cnn | {' | '.join(cells)} | {row['points']:+.2f} |" in table
    paired = [line for line in table.splitlines() if line.startswith("| caps r=")]
    assert [line.split(" | ")[:2] for line in paired] == [
        ["| caps r=3", "cnn"],
        ["| caps r=1", "caps r=3"],
        ["| caps r=5", "caps r=3"],
    ]


def test_packed_hits_round_trip_and_anything_else_is_refused():
    hits = np.random.default_rng(0).random(10_000) < 0.9
    text = robustness.pack(hits)
    assert len(text) == 1_668 and np.array_equal(robustness.unpack(text, 10_000), hits)
    for n in (1, 7, 8, 9):
        assert np.array_equal(robustness.unpack(robustness.pack(hits[:n]), n), hits[:n])
    unpadded = base64.b64encode(bytes(1_251)).decode()  # 1,668 characters too, but 1,251 bytes, not 1,250
    assert len(unpadded) == len(text) and "=" not in unpadded and robustness.unpack(unpadded, 10_000) is None
    for bad in (None, 7, "", text[:-4], text + "AAAA", "!" * len(text), text.replace(text[10], "*")):
        assert robustness.unpack(bad, 10_000) is None
    for count in (0, -5, 10_000.0, True, "10000", None):
        assert robustness.unpack(text, count) is None


def test_a_crafted_count_is_refused_before_anything_is_decoded(monkeypatch):
    text = robustness.pack(np.ones(10_000, dtype=bool))

    def refuse(*args, **kwargs):
        raise AssertionError("decoded a text of the wrong length")

    monkeypatch.setattr(robustness.base64, "b64decode", refuse)
    for n in (10**15, 9_000, 20_000):
        assert robustness.unpack(text, n) is None


def test_each_readout_records_which_affine_images_it_got_right_across_batches(tiny_models, synthetic_root, monkeypatch):
    capsnet, _ = tiny_models
    split = load_mnist(synthetic_root, train=False).head(7)
    guess = int(split.labels[6])  # a constant answer: right exactly where the label is `guess`, in every batch
    monkeypatch.setattr(robustness, "predictions", lambda model, x, counts: torch.full((len(counts), len(x)), guess))
    expected = (split.labels == guess).numpy()
    assert expected[4:].any() and not expected.all()
    for batch_size in (3, 7):
        result = robustness.measure(capsnet, split, batch_size=batch_size, sweep_limit=2)
        for readout in result.values():
            assert np.array_equal(robustness.unpack(readout["affine_correct"], 7), expected)


def test_the_paired_gap_counts_only_the_images_one_model_alone_gets_right():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 1], dtype=bool)
    b = np.array([1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    row = robustness.paired(a, b)
    assert (row["only_a"], row["only_b"]) == (2, 1) and row["points"] == pytest.approx(100 * (a.mean() - b.mean()))
    d = a.astype(float) - b.astype(float)
    assert row["standard_error"] == pytest.approx(100 * d.std(ddof=1) / np.sqrt(len(d)))
    assert row["standard_errors"] == pytest.approx(row["points"] / row["standard_error"])
    same = robustness.paired(a, a)
    assert (same["points"], same["standard_error"], same["standard_errors"]) == (0.0, 0.0, 0.0)
    one_way = robustness.paired(np.ones(3, bool), np.zeros(3, bool))  # every image favours a: no spread at all
    assert one_way["standard_error"] == 0.0 and one_way["standard_errors"] == float("inf")


def test_comparisons_never_raise_on_a_hand_edited_report():
    bits = robustness.pack(np.ones(8, dtype=bool))
    good = {"name": "c", "kind": "capsnet", "routing_iters": 3, "affine_correct": bits}
    good["by_routing"] = {"1": {"affine_correct": bits}, "3": {"affine_correct": bits}}
    cnn = {"name": 7, "kind": "cnn", "affine_correct": bits}
    assert [(r["a"], r["b"]) for r in robustness.comparisons([good, cnn], 8)] == [("c r=3", "7"), ("c r=1", "c r=3")]
    odd = [
        None, 3, "x", [], {"kind": "capsnet"}, {**good, "routing_iters": None}, {**good, "routing_iters": 3.0},
        {**good, "routing_iters": True}, {**good, "by_routing": [1]}, {**good, "by_routing": {"1": "x", 2: None}},
        {**cnn, "affine_correct": 5}, {**good, "affine_correct": bits[:-1]},
    ]  # fmt: skip
    for models in ([*odd, cnn], odd, None, "models", {"a": 1}):
        for n in (8, 0, -1, True, 8.0, "8", None):
            robustness.comparisons(models, n)  # rows for the good parts at most, never an exception
    assert robustness.comparisons([good, cnn], True) == [] and robustness.comparisons(None, 8) == []
    assert [r["b"] for r in robustness.comparisons([{**good, "routing_iters": 3.0}, cnn], 8)] == []


def capsviz(*args):
    env = {**OFFLINE_ENV, "CAPSVIZ_DATA": "/nonexistent-capsviz-data"}
    return subprocess.run([sys.executable, "-m", "capsviz", *map(str, args)], capture_output=True, text=True, env=env)


def test_the_cli_measures_shipped_and_given_models(tmp_path, synthetic_root, tiny_models):
    capsnet, cnn = tiny_models
    save_checkpoint(tmp_path / "caps.safetensors", capsnet, {"name": "tiny-caps"})
    save_checkpoint(tmp_path / "cnn.safetensors", cnn)
    common = ["--data-root", synthetic_root, "--limit", 4, "--device", "cpu"]
    out = tmp_path / "claims"
    given = ["--checkpoint", tmp_path / "caps.safetensors", "--checkpoint", tmp_path / "cnn.safetensors"]
    run = capsviz("robustness", "--json", *common, "--out-dir", out, *given)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    models = {m["name"]: m for m in result["models"]}
    assert len(models) == len(robustness.shipped_models()) + 2 and result["test_images"] == 4
    assert models["tiny-caps"]["kind"] == "capsnet" and set(models["tiny-caps"]["by_routing"]) == {"1", "3", "5"}
    assert models["cnn"]["kind"] == "cnn" and "by_routing" not in models["cnn"]
    assert models["cnn"]["params"] == sum(p.numel() for p in cnn.parameters())
    assert models["cnn"]["sha256"] == sha256_of(tmp_path / "cnn.safetensors")  # the weights the table describes
    assert result["hardware"].startswith("CPU (") and "thread" in result["hardware"]  # named as cards name it
    for model in result["models"]:
        accuracies = [model["mnist"], model["affine"], *(a for s in model["sweeps"].values() for a in s)]
        assert all(0 <= a <= 1 and a * 4 == round(a * 4) for a in accuracies)  # fractions of 4 images
    assert json.loads((out / "robustness.json").read_text())["models"] == result["models"]
    assert "| tiny-caps | capsnet |" in (out / "robustness.md").read_text()
    assert Image.open(out / "sweeps.png").size[0] == 3 * robustness.PANEL[0]


def test_the_cli_prints_markdown_and_refuses_a_bad_out_dir_before_measuring(tmp_path, synthetic_root):
    (tmp_path / "file").write_text("not a folder")
    refused = capsviz("robustness", "--data-root", synthetic_root, "--limit", 2, "--out-dir", tmp_path / "file")
    assert (
        refused.returncode == 2 and "must be a writable folder" in refused.stderr and "measuring" not in refused.stderr
    )
    missing = capsviz("robustness", "--data-root", synthetic_root, "--checkpoint", tmp_path / "none.safetensors")
    assert missing.returncode == 2 and "measuring" not in missing.stderr
