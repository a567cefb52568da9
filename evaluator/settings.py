"""``ChildSettings``: how one child network is trained and scored (the ``child:`` section of a search config)."""
from __future__ import annotations

from dataclasses import dataclass, field

from evaluator.tasks import CIFAR_TRAIN_IMAGES, IMAGE_MODELS, TASKS, find_task
from search.language.checks import Problems
from search.language.kernel import KERNELS

__all__ = ["ChildSettings", "COMPILE_MODES", "CIFAR_TRAIN_IMAGES", "IMAGE_MODELS", "TASKS"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass
class ChildSettings:
    """Settings of a child: task, network, optimiser, budget, data location and device.

    The defaults are the offline proxy (a small 1-D CNN on mnist1d, about 5 s per child on one CPU core).
    The paper's protocol is ``task: cifar10, model: resnet20, steps: 10000, batch_size: 128`` (configs/paper.yaml).
    """

    task: str = "mnist1d"  # mnist1d (offline proxy) | cifar10 | cifar100 | synthetic (no training; tests the search) | table (replays a tabular benchmark: child.table) | your own child: "my_project.children:train" or "path/to/file.py:train" (a function train(activation, seed, device, options) -> dict of metrics; see evaluator/user.py)
    table: str = ""  # task table: the table file a child looks its function up in (e.g. tables/mnist1d-150.json; see docs/tables.md); it returns one of the recorded seeds, chosen by the child's seed
    options: dict = field(default_factory=dict)  # a user-defined child's own settings, passed to it as a plain dict (plus "split": val or test, the held-out set to score); not used by the built-in tasks
    model: str = "auto"  # auto = the task's standard child (cnn1d for mnist1d, resnet20 for CIFAR); see evaluator/tasks.py
    steps: int = 500  # SGD steps per child (paper: 10,000 for ResNet-20 on CIFAR-10)
    batch_size: int = 128  # training batch (paper: 128)
    lr: float = 0.1  # peak learning rate after warm-up (the standard ResNet rate for batch 128)
    momentum: float = 0.9  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 on conv/linear weights (not on biases, batch-norm parameters or betas)
    warmup_steps: int = 25  # linear warm-up before the cosine decay; a short one keeps odd candidates from blowing up
    train_size: int = 0  # training examples; 0 = the task's standard (CIFAR: all not held out; mnist1d: 4,000)
    val_size: int = 5000  # validation examples held out of the training data (usual CIFAR hold-out: 5,000); 0 = none
    data_seed: int = 0  # picks the held-out CIFAR images and seeds the mnist1d generator: fixed for a whole search
    data_dir: str = "data"  # where datasets live (CIFAR: <data_dir>/cifar-10-batches-py; mnist1d: generated cache)
    download: bool = False  # download CIFAR when missing (needs internet); off so a search never stalls on a download
    augment: bool = True  # CIFAR: random crop with 4-pixel padding and horizontal flip (no effect on mnist1d)
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda
    compile: str = "auto"  # auto (torch.compile the child on CUDA only) | on (also on CPU) | off
    kernel: str = "auto"  # how a candidate's function runs: auto (compiled where the child is compiled or on CUDA, else native) | native (one kernel for every candidate: C++ on CPU, built once per machine; Triton on CUDA, compiled once per GPU, not yet timed on one; eager where it cannot run; docs/benchmarks.md) | eager (one torch op per operator; native runs eager's backward where a gradient of a gradient is asked for) | compiled (torch.compile per candidate)
    compile_mode: str = "default"  # torch.compile mode when the child is compiled: default | reduce-overhead (CUDA graphs) | max-autotune-no-cudagraphs
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    channels_last: str = "auto"  # memory format of image batches and convolutions: auto (on CUDA) | on | off
    data_device: str = "auto"  # where the dataset lives and batches are made and augmented: auto (the child's device) | cpu (copied to the GPU per batch)
    time_limit_s: float = 0.0  # wall-clock limit per child, loading included; 0 = none. Over it: status "timeout"
    threads: int = 1  # CPU threads per child (one per worker keeps workers from fighting); 0 = torch's default
    split: str = "val"  # held-out set whose accuracy is reported: val (the search's reward) | test (final reports)
    target: str = "x * sigmoid(x)"  # synthetic task: the function whose similarity is the reward
    noise: float = 0.0  # synthetic task: standard deviation of noise added to the reward (mimics seed noise)
    delay_s: float = 0.0  # synthetic task: seconds each child sleeps, mimicking training time (tests and benchmarks of the orchestration)
    delay_spread: float = 0.0  # synthetic task: each child sleeps delay_s times a random factor in [1 - spread, 1 + spread], drawn from the system's entropy (not the seed), so children end in an order no seed fixes, as under load

    def problems(self) -> list[tuple[str, str]]:
        """``(field, what is wrong and what is allowed)`` for every out-of-range or unknown value; empty when fine.
        Shapes and ranges only: a user's function and a table file are loaded by the task's ``prepare``."""
        out = Problems()
        task = find_task(self.task)
        if task is None:
            out.one_of("task", self.task, tuple(TASKS) + ("MODULE:FUNCTION", "FILE.py:FUNCTION"))
        else:
            out += task.problems(self)
        for name, allowed in (("device", ("auto", "cpu", "cuda")), ("compile", ("auto", "on", "off")),
                              ("kernel", ("auto",) + KERNELS),
                              ("compile_mode", COMPILE_MODES), ("precision", ("auto", "bf16", "fp32")),
                              ("channels_last", ("auto", "on", "off")), ("data_device", ("auto", "cpu")),
                              ("split", ("val", "test"))):
            out.one_of(name, getattr(self, name), allowed)
        for name, low, high in (("steps", 1, 10**7), ("batch_size", 1, 65_536), ("warmup_steps", 0, 10**7),
                                ("train_size", 0, 10**8), ("val_size", 0, 10**8), ("threads", 0, 1024),
                                ("data_seed", 0, 2**32 - 1), ("time_limit_s", 0, 10**7), ("delay_s", 0, 86_400)):
            out.within(name, getattr(self, name), low, high)
        if task is not None and task.dataset is not None:  # the built-in children: batch norm needs two examples
            out.need("batch_size", self.batch_size, self.batch_size != 1, ">= 2 (batch norm needs two examples)")
            out.need("train_size", self.train_size, self.train_size != 1,
                     "0 (the task's standard) or >= 2 (batch norm needs two examples in a batch)")
        out.need("lr", self.lr, self.lr > 0, "> 0")
        out.need("momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)")
        out.need("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        out.need("noise", self.noise, self.noise >= 0, ">= 0")
        out.need("delay_spread", self.delay_spread, 0 <= self.delay_spread <= 1, "in [0, 1]")
        out.need("data_dir", self.data_dir, bool(str(self.data_dir).strip()), "a folder (empty would be the current "
                 "one)")
        return out

    @property
    def resolved_model(self) -> str:
        """The model name with "auto" replaced by the task's standard child."""
        task = find_task(self.task)
        return (task.models[0] if task else "none") if self.model == "auto" else self.model

    @property
    def resolved_train_size(self) -> int:
        """Training examples, with 0 replaced by the task's standard."""
        task = find_task(self.task)
        return self.train_size or (task.train_size(self) if task else 0)
