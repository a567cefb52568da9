"""Datasets for children: CIFAR-10/100 through torchvision, and mnist1d generated locally as the offline proxy.

- A process loads each dataset once and keeps it in memory (and, per device, on that device) across the children it
  trains. Workers on one node share one copy on disk; the first download or generation happens under a file lock and
  is written atomically, so no worker ever reads half-written files.
- The validation set is held out of the training data and fixed by ``data_seed``: every candidate of a search is
  trained and scored on the same examples. The test set is only used when ``split`` is "test".
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random
import threading
from dataclasses import dataclass

import numpy as np
import torch

from evaluator.settings import ChildSettings
from evaluator.tasks import TASKS, task_named
from search.language.errors import UserError
from search.language.files import atomic_write

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
MNIST1D_TEST_SIZE = 10_000  # test signals when val_size is 0 (else as many as val); generated only when asked for
_MNIST1D_PART_SEED = {"train": 1, "val": 2, "test": 3}  # each part has its own generator seed (10 * data_seed + this)


@dataclass(frozen=True)
class TaskData:
    """One task's tensors, ready for training: ``train_*`` to train on, ``eval_*`` the held-out split asked for.

    Images stay uint8 (N, 3, 32, 32) until a batch is drawn (4x less memory; on the GPU the whole set fits);
    ``inputs`` turns a batch into normalised floats. mnist1d signals are float32 (N, 1, 40), already normalised.
    """

    task: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    num_classes: int
    split: str

    @property
    def is_image(self) -> bool:
        return self.train_x.dtype == torch.uint8

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of raw examples as the float input of the network."""
        if not self.is_image:
            return x
        mean, std = _normalisation(x.device)
        return (x.float() / 255.0 - mean) / std

    def to(self, device: torch.device) -> "TaskData":
        return TaskData(self.task, self.train_x.to(device), self.train_y.to(device), self.eval_x.to(device),
                        self.eval_y.to(device), self.num_classes, self.split)


@functools.lru_cache(maxsize=None)
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: building them per batch would copy from host memory, and wait for the GPU, every step.
    return (torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1),
            torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch (B, C, H, W), as tensor ops on its device.

    Each image is zero-padded by ``pad`` pixels, cropped back to H x W at a random offset and flipped left-right with
    probability 1/2; the random numbers come from ``generator`` (on the batch's device) so the result is reproducible.
    """
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=x.device)
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


# ---------------------------------------------------------------- per-process cache

_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: a cached loader may use the cache itself


def _cached(key: tuple, build):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def load_task(settings: ChildSettings, device: torch.device | str = "cpu") -> TaskData:
    """The training set and the held-out split (``settings.split``) of ``settings.task`` on ``device``.

    Loaded once per process and device. Raises ``search.language.errors.UserError`` when the data is missing and cannot be
    downloaded (the message says where to put the files) or the data directory cannot be created.
    """
    device = torch.device(device)
    key = (settings.task, os.path.abspath(settings.data_dir), settings.data_seed, settings.resolved_train_size,
           settings.val_size, settings.split)
    cpu = _cached(key + ("cpu",), lambda: _load(settings))
    if device.type == "cpu":
        return cpu
    return _cached(key + (str(device),), lambda: cpu.to(device))


def _load(settings: ChildSettings) -> TaskData:
    dataset = task_named(settings.task).dataset
    if dataset == "cifar":
        return _load_cifar(settings)
    if dataset == "mnist1d":
        return _load_mnist1d(settings)
    raise UserError(f"child.task: {settings.task!r} has no dataset (datasets: "
                    f"{', '.join(name for name, task in TASKS.items() if task.dataset)})")


def _data_dir(settings: ChildSettings) -> str:
    from search.language.errors import UserError

    path = os.path.abspath(settings.data_dir)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UserError(f"child.data_dir: cannot create {path}: {exc.strerror}") from None
    return path


# ---------------------------------------------------------------- CIFAR

GENERATED_MARK = "actsearch-generated.json"  # beside write_generated_cifar10's files: their md5 sums
_SUMS_LOCK = threading.Lock()

_CIFAR_FILES = {
    "cifar10": ("CIFAR-10", "cifar-10-python.tar.gz", "data_batch_1..5, test_batch, batches.meta"),
    "cifar100": ("CIFAR-100", "cifar-100-python.tar.gz", "train, test, meta"),
}


def missing_data(settings: ChildSettings) -> str | None:
    """Why ``settings``' dataset cannot load on this machine without a download, or None: a check of the files'
    presence alone (torchvision's names, not their checksums), made before a search or a study starts its workers."""
    if task_named(settings.task).dataset != "cifar" or settings.download:
        return None
    from torchvision import datasets

    cls = datasets.CIFAR10 if settings.task == "cifar10" else datasets.CIFAR100
    title, archive, files = _CIFAR_FILES[settings.task]
    where = os.path.join(os.path.abspath(settings.data_dir), cls.base_folder)
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if all(os.path.isfile(os.path.join(where, name)) for name in names):
        return None
    return (f"{title} not found in {where}: put the files of {archive} ({files}) there, or set child.download: "
            f"true on a machine with internet access")


def _cifar_arrays(task: str, root: str, download: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) as NCHW uint8 / int64 arrays, via torchvision."""
    from filelock import FileLock
    from torchvision import datasets

    from search.language.errors import UserError

    cls = datasets.CIFAR10 if task == "cifar10" else datasets.CIFAR100
    title, archive, files = _CIFAR_FILES[task]
    where = os.path.join(root, cls.base_folder)
    with FileLock(os.path.join(root, f".{task}.lock")), _generated_sums(where):  # one download per node
        try:
            train = cls(root, train=True, download=download)
            test = cls(root, train=False, download=False)
        except RuntimeError:
            hint = "" if download else (", or set child.download: true (actsearch train: --download) on a machine with "
                                        "internet access")
            raise UserError(f"{title} not found or corrupted in {where}: put the files of {archive} ({files}) "
                            f"there{hint}") from None
        except OSError as exc:  # the download itself failed (no network, disk full)
            raise UserError(f"could not download {title} to {root} ({exc}): put the files of {archive} "
                            f"({files}) in {where}") from None
    images = [np.ascontiguousarray(d.data.transpose(0, 3, 1, 2)) for d in (train, test)]  # NHWC -> NCHW
    labels = [np.asarray(d.targets, dtype=np.int64) for d in (train, test)]
    return images[0], labels[0], images[1], labels[1]


def _load_cifar(settings: ChildSettings) -> TaskData:
    root = _data_dir(settings)
    train_x, train_y, test_x, test_y = _cached((settings.task, root, "arrays"),
                                               lambda: _cifar_arrays(settings.task, root, settings.download))
    # The held-out validation images: a fixed random subset of the training set, chosen by data_seed.
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(settings.data_seed)).numpy()
    val_idx = order[:settings.val_size]
    train_idx = order[settings.val_size:settings.val_size + settings.resolved_train_size]
    if len(train_idx) == 0:
        raise UserError(f"child.val_size: holding out {settings.val_size:,} of {root}'s {len(train_y):,} training "
                        f"images leaves none to train on")
    if settings.split == "val":
        eval_x, eval_y = train_x[val_idx], train_y[val_idx]
    else:
        eval_x, eval_y = test_x, test_y
    num_classes = task_named(settings.task).num_classes
    return TaskData(settings.task, torch.from_numpy(train_x[train_idx]), torch.from_numpy(train_y[train_idx]),
                    torch.from_numpy(np.ascontiguousarray(eval_x)), torch.from_numpy(np.ascontiguousarray(eval_y)),
                    num_classes, settings.split)


# ---------------------------------------------------------------- mnist1d

def _mnist1d_part(root: str, part: str, size: int, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` mnist1d signals (float32 (N, 1, 40)) and labels, generated once and cached under ``root``."""
    from filelock import FileLock

    seed = 10 * data_seed + _MNIST1D_PART_SEED[part]
    folder = os.path.join(root, "mnist1d")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{part}-n{size}-seed{seed}.npz")
    with FileLock(path + ".lock"):
        if not os.path.exists(path):
            x, y = _generate_mnist1d(size, seed)
            buf = io.BytesIO()
            np.savez(buf, x=x, y=y)
            atomic_write(path, buf.getvalue())  # readers see no file or the whole file
    with np.load(path) as f:
        return f["x"], f["y"]


def _generate_mnist1d(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = -(-size // 10) * 10  # the generator makes num_samples // 10 per class
    args.train_split = 1.0
    args.seed = seed
    # make_dataset seeds the global numpy and random generators: leave the caller's streams as they were.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    # make_dataset scales each part to mean 0, std 1 over the whole part: large parts share the same scaling.
    x = data["x"][:size].astype(np.float32)[:, None, :]
    y = data["y"][:size].astype(np.int64)
    return x, y


def _load_mnist1d(settings: ChildSettings) -> TaskData:
    root = _data_dir(settings)
    train_x, train_y = _mnist1d_part(root, "train", settings.resolved_train_size, settings.data_seed)
    if settings.split == "val":
        eval_x, eval_y = _mnist1d_part(root, "val", settings.val_size, settings.data_seed)
    else:
        eval_x, eval_y = _mnist1d_part(root, "test", settings.val_size or MNIST1D_TEST_SIZE, settings.data_seed)
    return TaskData("mnist1d", torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(eval_x),
                    torch.from_numpy(eval_y), 10, settings.split)


# ---------------------------------------------------------------- a generated CIFAR-10, for machines without it

def write_generated_cifar10(root: str, per_batch: int = 1000, n_test: int = 1000, seed: int = 0) -> dict[str, str]:
    """Random images and labels in torchvision's on-disk CIFAR-10 format (``root/cifar-10-batches-py``: five training
    batches of ``per_batch`` images, a test batch, the meta file), so the real loading path runs where the real data
    cannot be downloaded (a GPU machine's smoke test, the tests). Returns each file's md5, which it also writes beside
    them (``GENERATED_MARK``): torchvision checks the real files' sums, and the loader checks these there instead.
    The images are random: a child's accuracy on them means nothing, its speed does."""
    import hashlib
    import pickle

    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    md5 = {}

    def dump(name: str, obj: dict) -> None:
        data = pickle.dumps(obj)
        atomic_write(os.path.join(folder, name), data)
        md5[name] = hashlib.md5(data).hexdigest()

    for i in range(1, 6):
        dump(f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                 "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                                 "labels": rng.integers(0, 10, per_batch).tolist(),
                                 "filenames": [f"img{i}_{j}.png" for j in range(per_batch)]})
    dump("test_batch", {"batch_label": "testing batch 1 of 1", "data": rng.integers(0, 256, (n_test, 3072),
                                                                                      dtype=np.uint8),
                        "labels": rng.integers(0, 10, n_test).tolist()})
    dump("batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                          "ship", "truck"], "num_cases_per_batch": per_batch, "num_vis": 3072})
    atomic_write(os.path.join(folder, GENERATED_MARK), json.dumps(md5, indent=1))
    return md5


@contextlib.contextmanager
def _generated_sums(folder: str):
    """While loading: torchvision's CIFAR-10 checks the sums ``write_generated_cifar10`` recorded in ``folder``
    (``GENERATED_MARK``) instead of the real files' md5, where that mark is; nothing changes elsewhere."""
    mark = os.path.join(folder, GENERATED_MARK)
    if not os.path.isfile(mark):
        yield
        return
    from torchvision import datasets

    with open(mark) as fh:
        md5 = json.load(fh)
    cls = datasets.CIFAR10
    with _SUMS_LOCK:  # the class is the process's: one load changes it at a time
        saved = cls.train_list, cls.test_list, cls.meta
        cls.train_list = [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)]
        cls.test_list = [["test_batch", md5["test_batch"]]]
        cls.meta = {**cls.meta, "md5": md5["batches.meta"]}
        try:
            yield
        finally:
            cls.train_list, cls.test_list, cls.meta = saved
