"""The evaluator: datasets, child networks, activations and the training loop (CPU, tiny budgets)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torchvision import datasets

from evaluator import data as data_mod
from evaluator.activations import BASELINES, activation_factory, activation_label
from evaluator.data import load_task, random_crop_flip
from evaluator.models import build_model, count_parameters
from evaluator.settings import ChildSettings
from evaluator.train import BatchStream, build_child, learning_rate, train_child
from search.language.errors import UserError
from search.language.kernel import Activation

RECORD_KEYS = {"status", "accuracy", "split", "train_loss", "steps", "wall_s", "images_per_s", "device", "error",
               "activation", "seed", "fault", "kernel"}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> ChildSettings:
    """Proxy settings with small generated sets (shared by this module's tests: generated once)."""
    return ChildSettings(task="mnist1d", data_dir=str(tmp_path_factory.mktemp("data")), train_size=2000,
                         val_size=1000, device="cpu", threads=1)


# ---------------------------------------------------------------- CIFAR through torchvision

def _write_cifar10(root, n_per_batch: int = 12, n_test: int = 10, seed: int = 0):
    """A tiny CIFAR-10 in torchvision's on-disk format; returns (train rows, train labels, test rows, md5s)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels, md5 = [], [], {}

    def dump(name, obj):
        (folder / name).write_bytes(pickle.dumps(obj))
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()

    for i in range(1, 6):
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch).tolist()
        dump(f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": data, "labels": y,
                                 "filenames": [f"img{i}_{j}.png" for j in range(n_per_batch)]})
        rows.append(data)
        labels += y
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    dump("test_batch", {"batch_label": "testing batch 1 of 1", "data": test,
                        "labels": rng.integers(0, 10, n_test).tolist()})
    dump("batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                          "ship", "truck"], "num_cases_per_batch": n_per_batch, "num_vis": 3072})
    return np.concatenate(rows), np.asarray(labels), test, md5


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    train_rows, train_labels, test_rows, md5 = _write_cifar10(tmp_path)
    # torchvision checks the real files' md5 sums: point its class at our files' sums instead.
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                         for i in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                   "md5": md5["batches.meta"]})
    settings = ChildSettings(task="cifar10", data_dir=str(tmp_path), val_size=20, batch_size=16, steps=3,
                             device="cpu", warmup_steps=1)
    return settings, train_rows, train_labels, test_rows


def test_cifar_loads_through_torchvision_with_a_held_out_validation_split(tiny_cifar):
    settings, train_rows, train_labels, test_rows = tiny_cifar
    data = load_task(settings)
    images = train_rows.reshape(-1, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (40, 3, 32, 32)
    assert data.eval_x.shape == (20, 3, 32, 32) and data.num_classes == 10

    def source_index(img):  # which training image this is (random pixels: each image is unique)
        return int(np.flatnonzero((images == img.numpy()).all(axis=(1, 2, 3)))[0])

    train_idx = [source_index(img) for img in data.train_x]
    val_idx = [source_index(img) for img in data.eval_x]
    assert not set(train_idx) & set(val_idx) and len(set(train_idx) | set(val_idx)) == 60
    assert data.train_y.tolist() == train_labels[train_idx].tolist()
    # The held-out images depend on data_seed only: another data_seed holds out others.
    other = load_task(dataclasses.replace(settings, data_seed=1))
    assert sorted(source_index(img) for img in other.eval_x) != sorted(val_idx)
    # The test split is the test batch, used only when asked for.
    test = load_task(dataclasses.replace(settings, split="test"))
    assert torch.equal(test.eval_x, torch.from_numpy(test_rows.reshape(-1, 3, 32, 32)))


def test_a_validation_split_that_leaves_no_training_image_is_bad_input(tiny_cifar):
    """Holding out every training image (val_size 50,000, or as many as a smaller folder holds) trained every child
    on nothing: each "diverged" (a candidate's fault) and the search spent its budget on them."""
    settings, train_rows, _, _ = tiny_cifar
    with pytest.raises(UserError, match="leaves none to train on"):
        load_task(dataclasses.replace(settings, val_size=len(train_rows)))
    assert ("val_size", "must leave training images: below 50,000 (CIFAR's training images), got 50,000") in \
        dataclasses.replace(settings, val_size=50_000).problems()


def test_resnet20_child_trains_on_cifar_with_augmentation(tiny_cifar):
    settings, *_ = tiny_cifar
    record = train_child(settings, "relu", seed=0).to_dict()
    assert record["status"] == "ok", record["error"]
    assert record["steps"] == 3 and 0.0 <= record["accuracy"] <= 1.0


def test_missing_cifar_says_where_to_put_the_files(tmp_path):
    settings = ChildSettings(task="cifar100", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="cifar-100-python") as info:
        load_task(settings)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)
    # Inside a child the same problem is a failed result, not an exception.
    record = train_child(settings, "relu", seed=0).to_dict()
    assert record["status"] == "failed" and "cifar-100-python" in record["error"]
    assert record["fault"] == "system"  # a node without the data says nothing about the function


def test_random_crop_flip_translates_and_mirrors_each_image():
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and torch.equal(out, again)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    found = []
    for b in range(32):
        windows = [((r, c, f), padded[b, :, r:r + 8, c:c + 8]) for r in range(5) for c in range(5) for f in (0, 1)]
        matches = [key for key, w in windows if torch.equal(out[b], w.flip(2) if key[2] else w)]
        assert len(matches) == 1, f"image {b} is not a crop of its padded original"
        found.append(matches[0])
    assert 0 < sum(f for _, _, f in found) < 32  # some flipped, some not
    assert len({(r, c) for r, c, _ in found}) > 5  # offsets vary per image


# ---------------------------------------------------------------- mnist1d

def test_mnist1d_is_generated_once_and_cached_on_disk(tmp_path):
    np_state = np.random.get_state()[1].copy()
    results = []

    def load():
        results.append(data_mod._mnist1d_part(str(tmp_path), "val", 50, data_seed=0))

    threads = [threading.Thread(target=load) for _ in range(3)]  # racing workers: one generation, one file
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = sorted(p.name for p in (tmp_path / "mnist1d").iterdir() if not p.name.endswith(".lock"))
    assert files == ["val-n50-seed2.npz"]
    assert all(np.array_equal(results[0][0], r[0]) for r in results)
    x, y = results[0]
    assert x.shape == (50, 1, 40) and x.dtype == np.float32 and set(y.tolist()) <= set(range(10))
    assert np.array_equal(np.random.get_state()[1], np_state)  # the generator's seeding did not leak
    mtime = (tmp_path / "mnist1d" / files[0]).stat().st_mtime_ns
    data_mod._mnist1d_part(str(tmp_path), "val", 50, data_seed=0)
    assert (tmp_path / "mnist1d" / files[0]).stat().st_mtime_ns == mtime


def test_a_process_loads_each_dataset_once(proxy):
    assert load_task(proxy) is load_task(dataclasses.replace(proxy, steps=7, lr=0.3))


# ---------------------------------------------------------------- children

def test_proxy_child_learns_far_above_chance_and_ranks_identity_below_relu(proxy):
    settings = dataclasses.replace(proxy, steps=300)
    relu = train_child(settings, "relu", seed=0).to_dict()
    identity = train_child(settings, "x", seed=0).to_dict()
    assert set(relu) == RECORD_KEYS and json.loads(json.dumps(relu)) == relu
    assert relu["status"] == "ok" and relu["steps"] == 300 and relu["device"] == "cpu"
    assert relu["accuracy"] > 0.8  # chance is 0.1
    assert identity["status"] == "ok" and identity["accuracy"] < relu["accuracy"] - 0.3
    assert relu["images_per_s"] > 0 and relu["train_loss"] < identity["train_loss"]


@pytest.mark.parametrize("activation, lr", [("exp(x)**3", 0.1), ("relu", 1e4)])
def test_a_child_that_blows_up_reports_diverged_quickly(proxy, activation, lr):
    record = train_child(dataclasses.replace(proxy, steps=400, lr=lr), activation, seed=0).to_dict()
    assert record["status"] == "diverged" and record["accuracy"] is None
    assert record["steps"] < 50 and "non-finite" in record["error"]
    assert record["fault"] == "candidate"


def test_time_limit_gives_timeout(proxy):
    record = train_child(dataclasses.replace(proxy, steps=10**6, time_limit_s=0.5), "relu", seed=0).to_dict()
    assert record["status"] == "timeout" and 0 < record["steps"] < 10**6 and record["accuracy"] is None
    assert record["fault"] == "system"  # a busy machine, as likely as a slow function: tried again, never a reward


def test_an_unusable_activation_is_a_failed_result_not_an_exception(proxy):
    record = train_child(proxy, "frobnicate(x)", seed=0).to_dict()
    assert record["status"] == "failed" and "frobnicate" in record["error"]
    assert record["fault"] == "candidate"


def test_same_seed_reproduces_a_child_bit_for_bit_on_cpu(proxy):
    settings = dataclasses.replace(proxy, steps=60)
    a, b = (train_child(settings, "x * sigmoid(beta * x)", seed=3).to_dict() for _ in range(2))
    c = train_child(settings, "x * sigmoid(beta * x)", seed=4).to_dict()
    timing = ("wall_s", "images_per_s")
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert a["train_loss"] != c["train_loss"]


def test_same_seed_gives_every_candidate_the_same_init_and_batches(proxy):
    data = load_task(proxy)
    models = [build_child(proxy, act, 5, torch.device("cpu"), 10) for act in ("relu", "swish", "cos(x) - x")]
    shared = [{k: v for k, v in m.state_dict().items() if ".beta" not in k} for m in models]
    assert all(s.keys() == shared[0].keys() and all(torch.equal(s[k], shared[0][k]) for k in s) for s in shared)
    streams = [BatchStream(data, 64, 5, augment=True) for _ in range(2)]
    for _ in range(40):  # past an epoch boundary (2000 / 64)
        (x1, y1), (x2, y2) = streams[0].next(), streams[1].next()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_learning_rate_warms_up_then_decays_to_zero():
    s = ChildSettings(lr=0.2, steps=100, warmup_steps=10)
    lrs = [learning_rate(t, s) for t in range(100)]
    assert lrs[0] == pytest.approx(0.02) and lrs[9] == pytest.approx(0.2) and max(lrs) == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 1e-3


def test_synthetic_task_is_dispatched_without_training():
    record = train_child(ChildSettings(task="synthetic", steps=300), "x * sigmoid(x)", seed=0).to_dict()
    assert record["status"] == "ok" and record["accuracy"] == pytest.approx(1.0)
    assert record["steps"] == 300 and record["wall_s"] < 5  # nominal steps (what early stopping saves), none trained


# ---------------------------------------------------------------- networks and activations

@pytest.mark.parametrize("name, millions", [("resnet20", 0.27), ("resnet56", 0.85), ("resnet110", 1.7),
                                            ("preact_resnet164", 1.7), ("wrn_28_10", 36.5)])
def test_parameter_counts_match_the_literature(name, millions):
    model = build_model(name, activation_factory("relu"))
    assert count_parameters(model) / 1e6 == pytest.approx(millions, rel=0.02)


def test_every_activation_site_has_its_own_module_and_betas():
    model = build_model("resnet20", activation_factory("x * sigmoid(beta * x)"))
    sites = [m for m in model.modules() if isinstance(m, Activation)]
    assert len(sites) == 19 and len({id(m) for m in sites}) == 19  # stem + 2 per block x 9 blocks
    assert len({id(m.beta) for m in sites}) == 19
    assert sorted({m.beta.shape[1] for m in sites}) == [16, 32, 64]
    prelu = [m for m in build_model("cnn1d", activation_factory("prelu")).modules()
             if isinstance(m, torch.nn.PReLU)]
    assert len(prelu) == 4 and all(m.weight.numel() in (32, 64) for m in prelu)


def test_baselines_by_name_compute_their_functions():
    x = torch.linspace(-4, 4, 81).reshape(1, 81)
    expected = {"relu": torch.relu(x), "leaky_relu": torch.where(x > 0, x, 0.01 * x),
                "prelu": torch.where(x > 0, x, 0.25 * x),
                "elu": torch.where(x > 0, x, torch.expm1(x)), "softplus": torch.log1p(torch.exp(x)),
                "silu": x * torch.sigmoid(x), "swish": x * torch.sigmoid(x), "tanh": torch.tanh(x),
                "sigmoid": torch.sigmoid(x), "gelu": 0.5 * x * (1 + torch.erf(x / 2 ** 0.5)),
                "selu": 1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * torch.expm1(x))}
    assert set(expected) == set(BASELINES)
    for name, want in expected.items():
        module = activation_factory(name)(81)
        torch.testing.assert_close(module(x), want, msg=name)
    assert sum(p.numel() for p in activation_factory("swish")(7).parameters()) == 7  # trainable beta per channel


def test_activation_names_and_expressions_resolve_or_fail_in_one_line():
    assert activation_label("ReLU") == "relu"
    assert activation_label("max(x,sigmoid(x))") == "max(x, sigmoid(x))"
    assert activation_label("beta") == "beta"  # a constant still trains (the screen is the search's business)
    with pytest.raises(UserError, match="unknown activation 'swishy'") as info:
        activation_factory("swishy")
    assert "\n" not in str(info.value)


def test_settings_report_bad_values_by_field():
    fields = dict(ChildSettings(task="cifar10", model="cnn1d", steps=0, device="tpu", split="train", lr=-1,
                                train_size=46_000).problems())
    assert set(fields) == {"model", "steps", "device", "split", "lr", "train_size"}
    assert ChildSettings().problems() == [] and ChildSettings(task="cifar100").problems() == []
    assert ChildSettings().resolved_model == "cnn1d" and ChildSettings(task="cifar10").resolved_model == "resnet20"
    assert ChildSettings(task="cifar10").resolved_train_size == 45_000


def test_the_native_kernels_build_is_not_the_childs_time(proxy, monkeypatch):
    """The native kernel compiles once per machine (tens of seconds): that must not use up the child's time limit."""
    from search.language import native

    if not native.available():
        pytest.skip("the native kernel cannot be built here")
    built, calls = native.extension(), []
    train_child(dataclasses.replace(proxy, steps=1), "relu", seed=0)  # the module's data, generated once, first

    def slow_first_build():  # the first call in this process stands for a build that takes 6 s
        if not calls:
            time.sleep(6.0)
        calls.append(1)
        return built

    monkeypatch.setattr(native, "extension", slow_first_build)
    settings = dataclasses.replace(proxy, steps=20, time_limit_s=5.0, kernel="native")  # 20 steps: well under 5 s
    record = train_child(settings, "x * sigmoid(beta * x)", seed=0).to_dict()
    assert record["status"] == "ok" and record["kernel"] == "native", record
    assert record["wall_s"] < 6.0  # the 6 s build happened before the child's clock started


_HEAP_PROBE = """
import resource, sys, torch
from evaluator.train import steady_heap
if sys.argv[1] == "kept":
    assert steady_heap()
def step():  # the tensors of a step, allocated and freed again (1 to 5 MiB)
    ts = [torch.ones(n << 18) for n in (1, 3, 2, 5, 4)]
    del ts
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_childs_worker_keeps_freed_memory_instead_of_faulting_it_in_every_step():
    """steady_heap: the same big tensors allocated and freed step after step cost page faults (about 240 a step by
    glibc's defaults here) only while the heap grows (13 to 51 a step once it is kept)."""
    faults = {}
    for mode in ("default", "kept"):
        out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], capture_output=True, text=True, timeout=120,
                             check=True)
        faults[mode] = float(out.stdout.split()[-1])
    assert faults["kept"] * 3 < faults["default"], faults


def test_a_generated_cifar10_loads_through_torchvision_as_it_is_and_leaves_its_checksums_alone(tmp_path):
    """A GPU machine has no CIFAR-10 and no network: write_generated_cifar10's folder trains through the real loading
    path (its mark holds the files' sums), and torchvision's own sums for the real files are left as they were."""
    from evaluator.data import GENERATED_MARK, load_task, write_generated_cifar10

    before = (datasets.CIFAR10.train_list, datasets.CIFAR10.test_list, datasets.CIFAR10.meta)
    write_generated_cifar10(str(tmp_path), per_batch=8, n_test=6)
    assert (tmp_path / "cifar-10-batches-py" / GENERATED_MARK).is_file()
    data = load_task(ChildSettings(task="cifar10", data_dir=str(tmp_path), val_size=4, split="test"))
    assert tuple(data.train_x.shape) == (36, 3, 32, 32) and tuple(data.eval_x.shape) == (6, 3, 32, 32)
    assert (datasets.CIFAR10.train_list, datasets.CIFAR10.test_list, datasets.CIFAR10.meta) == before
