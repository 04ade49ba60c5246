"""Re-training the user's own model on the user's own data: inputs, lineage, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgewise.kb import KnowledgeBase
from edgewise.registry import list_models, register_model, save_trainable, zoo_card
from edgewise.retrain.ownmodel import (
    held_out_accuracy,
    prepare_own,
    register_retrained,
    write_job_inputs,
)
from edgewise.workloads.userdata import data_fingerprint, write_image_folder

DIGITS = tuple(str(i) for i in range(10))


def _digits_folder(out: Path, n: int = 120) -> Path:
    """The first ``n`` of scikit-learn's digits as PNGs, one folder per digit."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return write_image_folder(bunch.images[:n] / 16.0, bunch.target[:n], out)


def _register_v1(kb: KnowledgeBase, tmp_path: Path) -> Path:
    """A digits_cnn saved in its trainable form (safetensors + arch), registered as digits:v1.

    Its card normalises images as a user's card would (digits' pixels: mean 0.3, std 0.33).
    """
    from dataclasses import replace

    from edgewise.registry import InputSpec
    from edgewise.workloads.zoo import build_model

    card = zoo_card("digits_cnn").with_labels(DIGITS)
    card = replace(card, input=InputSpec("image", (1, 32, 32), mean=(0.3,), std=(0.33,)))
    module = build_model("digits_cnn", seed=3).module
    path = save_trainable(module, card, tmp_path / "v1", arch="digits_cnn")
    register_model(kb, "digits", path)
    return path


def test_prepare_own_reads_the_registered_model_and_the_folder(tmp_path: Path) -> None:
    kb = KnowledgeBase.open(None)
    _register_v1(kb, tmp_path)
    folder = _digits_folder(tmp_path / "imgs")
    own = prepare_own(kb, "digits", str(folder), seed=0)
    assert own.parent == "digits:v1" and own.name == "digits" and own.ref == "digits:v1"
    d = own.data
    assert d.x_train.shape[1:] == (1, 32, 32) and len(d.y_train) + len(d.y_held) == 120
    assert set(d.y_held.tolist()) == set(range(10))  # stratified: every digit held out
    assert d.fingerprint.startswith("sha256:") and d.num_classes == 10
    assert own.stem.startswith("digits-") and own.memory_mb[0] > 150.0


def test_the_ranks_load_what_the_job_hands_them(tmp_path: Path) -> None:
    from edgewise.retrain.trainer import build_module, train_split

    kb = KnowledgeBase.open(None)
    _register_v1(kb, tmp_path)
    own = prepare_own(kb, "digits", str(_digits_folder(tmp_path / "imgs")), seed=0)
    tensors, init = write_job_inputs(tmp_path / "job" / "inputs", own.data, own.module.state_dict())
    x, y, n = train_split(str(tensors), "none", 0)
    assert torch.equal(x, own.data.x_train) and torch.equal(y, own.data.y_train) and n == 10
    rank_module = build_module(str(own.save(tmp_path / "job" / "inputs" / "model")), 0, n)
    assert rank_module.training
    for a, b in zip(
        rank_module.state_dict().values(), own.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert torch.load(init, weights_only=True).keys() == own.module.state_dict().keys()


def test_register_retrained_records_the_lineage(tmp_path: Path) -> None:
    kb = KnowledgeBase.open(None)
    _register_v1(kb, tmp_path)
    own = prepare_own(kb, "digits", str(_digits_folder(tmp_path / "imgs")), seed=0)
    before = held_out_accuracy(own.module, None, own.data)
    trained = {
        k: v + 0.01 if v.is_floating_point() else v for k, v in own.module.state_dict().items()
    }
    weights = tmp_path / "final.pt"
    torch.save(trained, weights)
    after = held_out_accuracy(own.module, weights, own.data)
    path, ref = register_retrained(kb, own, weights, (before, after), tmp_path / "result")
    assert ref == "digits:v2" and (path / "model.safetensors").exists()
    v2 = {v.ref: v for v in list_models(kb)}["digits:v2"]
    assert v2.parent == "digits:v1" and v2.data_fingerprint == own.data.fingerprint
    assert v2.accuracy_before == pytest.approx(before) and v2.accuracy_after == pytest.approx(after)


def _cli(args: list[str]) -> tuple[int, str]:
    from edgewise.cli.main import make_app

    res = CliRunner().invoke(make_app(["retrain"]), ["retrain", *args])
    return res.exit_code, res.output


def _devices(tmp_path: Path) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(
        "devices:\n  - {name: a, cpus: 1.0, memory_mb: 2048}\n  - {name: b, cpus: 0.5, memory_mb: 2048}\n"
    )
    return path


def test_bad_input_is_one_line_and_registers_nothing(tmp_path: Path) -> None:
    kb = KnowledgeBase.open(None)
    _register_v1(kb, tmp_path)
    one = write_image_folder(np.zeros((3, 8, 8)), np.zeros(3, dtype=int), tmp_path / "one")
    scripted = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    outside = tmp_path / "outside.npz"
    np.savez(outside, x=np.zeros((4, 1, 32, 32)), y=np.array([0, 1, 2, 12]))
    cases = [
        (["--model", "digits", "--data", str(one)], f"{one}: only one class"),
        (
            ["--model", "digits", "--data", str(outside)],
            "label 12 is outside the model's 10 outputs",
        ),
        (
            ["--model", str(scripted), "--data", str(outside)],
            "cannot be re-trained; re-training takes",
        ),
        (["--model", "digits:v7", "--data", str(outside)], "v7"),
    ]
    for args, words in cases:
        code, out = _cli(["--devices", str(_devices(tmp_path)), *args])
        assert code == 2 and words in out and len(out.strip().splitlines()) == 1, out
    assert [v.ref for v in list_models(kb)] == ["digits:v1"]


def _cache_profiles(kb: KnowledgeBase, devices: Path, ref: str, folder: Path, batch: int) -> None:
    """Profiles of the pool as a rerun finds them in the knowledge base (skips ~30 s)."""
    from edgewise.config import load_devices
    from edgewise.planning.retrain import DeviceProfile, Intensity
    from edgewise.retrain import records
    from edgewise.workloads.userdata import data_fingerprint

    specs = load_devices(devices).devices
    key = records.pool_key(specs, ref, data_fingerprint(folder), batch)
    profiles = {d.name: DeviceProfile(d.name, (Intensity(1, 0, 400.0 * d.cpus),)) for d in specs}
    records.save_profiles(kb, key, profiles)


@pytest.mark.slow
def test_retrain_own_model_registers_v2_with_lineage(tmp_path: Path) -> None:
    """A registered digits_cnn re-trained on a PNG folder over 2 emulated devices (~25 s)."""
    import json

    kb = KnowledgeBase.open(None)
    _register_v1(kb, tmp_path)
    folder = _digits_folder(tmp_path / "imgs", n=400)
    devices = _devices(tmp_path)
    _cache_profiles(kb, devices, "digits:v1", folder, batch=32)
    args = ["--devices", str(devices), "--model", "digits", "--data", str(folder)]
    args += ["--steps", "30", "--global-batch", "64", "--workdir", str(tmp_path / "job"), "--json"]
    code, out = _cli(args)
    assert code == 0, out[-3000:]
    got = json.loads(out[out.index("{") :])
    assert got["registered"] == "digits:v2" and got["parent"] == "digits:v1"
    assert got["steps"] == 30 and got["profiles"] == "cache"
    # single-process training of the same net and batches: 0.10 -> 0.72 in 30 steps
    assert got["accuracy_after"] > got["accuracy_before"] + 0.2
    v2 = {v.ref: v for v in list_models(kb)}["digits:v2"]
    assert v2.parent == "digits:v1" and v2.accuracy_after == pytest.approx(got["accuracy_after"])
    assert v2.data_fingerprint == got["data_fingerprint"] == data_fingerprint(folder)
    assert v2.accuracy_before == pytest.approx(got["accuracy_before"])


def test_when_drift_on_own_data_checks_held_out_accuracy_and_stops(tmp_path: Path) -> None:
    from edgewise.api.retrain import retrain

    kb = KnowledgeBase.open(None)
    _register_v1(kb, tmp_path)
    folder = _digits_folder(tmp_path / "imgs")
    res = retrain(
        devices=_devices(tmp_path),
        model="digits",
        data=str(folder),
        when_drift=True,
        threshold=0.05,
        workdir=tmp_path / "job",
    )
    assert res.job is None and res.drift is not None and not res.drift.update
    assert res.as_dict() == {"drift": res.as_dict()["drift"], "updated": False}
    assert "accuracy on labelled feedback 0.103 >= threshold 0.050" in res.drift.reason
    assert not (tmp_path / "job").exists() and len(list_models(kb)) == 1
    code, out = _cli(
        ["--devices", str(_devices(tmp_path)), "--model", "digits", "--data", "digits"]
    )
    assert code == 2 and "--data digits: the built-in data sets re-train the zoo models" in out


def test_lineage_keys_only_in_an_own_models_json() -> None:
    from edgewise.api.retrain import RetrainedModel
    from edgewise.cli.retrain import _summary
    from edgewise.planning.retrain import DeviceProfile, DeviceState, Intensity, plan_exact
    from edgewise.retrain.jobs import make_constraints

    c = make_constraints("digits_cnn", 64, memory=(10.0, 0.1))
    plan = plan_exact(
        [DeviceState("a", 1.0, 2048.0, None)],
        {"a": DeviceProfile("a", (Intensity(1, 0, 500.0),))},
        c,
    )
    builtin = RetrainedModel(
        job_id=1,
        model="digits_cnn",
        plan=plan,
        steps=3,
        train_time_s=1.0,
        accuracy_before=0.5,
        accuracy_after=0.75,
        failures=[],
        recovery_s=None,
        replans=[],
        background={},
        profiles="cache",
        reprofile_next=False,
        weights=Path("final.pt"),
    )
    lineage = {"data_fingerprint", "trained", "parent", "registered"}
    assert not lineage & set(builtin.as_dict()) and {"accuracy_before", "accuracy_after"} <= set(
        builtin.as_dict()
    )
    assert "drifted-split accuracy 0.500 -> 0.750; weights final.pt" in _summary(builtin)
    from dataclasses import replace

    own = replace(
        builtin,
        model="digits:v1",
        data_fingerprint="sha256:ab",
        trained=Path("r"),
        parent="digits:v1",
        registered="digits:v2",
    )
    assert own.as_dict()["registered"] == "digits:v2" and lineage <= set(own.as_dict())
    assert _summary(own).endswith("held-out accuracy 0.500 -> 0.750; registered digits:v2")
    assert _summary(replace(own, parent=None, registered=None)).endswith("; saved r")
