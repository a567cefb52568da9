"""``ChildSettings``: how one child network is trained and scored (the ``child:`` section of a search config)."""
from __future__ import annotations

from dataclasses import dataclass, field

TASKS = ("mnist1d", "cifar10", "cifar100", "synthetic", "table")
# The child each task trains when ``model`` is "auto", and the models each task accepts.
DEFAULT_MODEL = {"mnist1d": "cnn1d", "cifar10": "resnet20", "cifar100": "resnet20", "synthetic": "none", "table": "none"}
IMAGE_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "preact_resnet164", "wrn_28_10")
MODELS_BY_TASK = {"mnist1d": ("cnn1d",), "cifar10": IMAGE_MODELS, "cifar100": IMAGE_MODELS, "synthetic": ("none",),
                  "table": ("none",)}
# Training examples used when ``train_size`` is 0: every CIFAR image not held out; 4,000 generated mnist1d signals.
DEFAULT_TRAIN_SIZE = {"mnist1d": 4_000}
CIFAR_TRAIN_IMAGES = 50_000
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
    model: str = "auto"  # auto = the task's standard child (cnn1d for mnist1d, resnet20 for CIFAR); see MODELS_BY_TASK
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

    def problems(self) -> list[tuple[str, str]]:
        """``(field, what is wrong and what is allowed)`` for every out-of-range or unknown value; empty when fine."""
        out: list[tuple[str, str]] = []

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                out.append((name, f"must be one of {', '.join(allowed)}; got {value!r}"))

        from evaluator.user import is_user_task

        # A user-defined child's function is imported and checked by the whole config (search.loop.config), which
        # knows where to look (resources.working_dir); `actsearch train` checks it too.
        if is_user_task(self.task):
            if self.model != "auto":
                out.append(("model", f"a user-defined child builds its own model: leave model at auto, got "
                                     f"{self.model!r}"))
            if "split" in self.options:
                out.append(("options", "'split' is set by actsearch (val during the search, test for significance); "
                                       "use another name"))
        else:
            choice("task", TASKS)
            if self.options:
                out.append(("options", f"only a user-defined child (task MODULE:FUNCTION) takes options; task "
                                       f"{self.task} got {sorted(self.options)[:3]}"))
        choice("device", ("auto", "cpu", "cuda"))
        choice("compile", ("auto", "on", "off"))
        choice("compile_mode", COMPILE_MODES)
        choice("precision", ("auto", "bf16", "fp32"))
        choice("channels_last", ("auto", "on", "off"))
        choice("data_device", ("auto", "cpu"))
        choice("split", ("val", "test"))
        if self.task in MODELS_BY_TASK and self.model != "auto" and self.model not in MODELS_BY_TASK[self.task]:
            out.append(("model", f"task {self.task} trains one of auto, {', '.join(MODELS_BY_TASK[self.task])}; "
                                 f"got {self.model!r}"))
        for name, low, high in (("steps", 1, 10**7), ("batch_size", 1, 65_536), ("warmup_steps", 0, 10**7),
                                ("train_size", 0, 10**8), ("val_size", 0, 10**8), ("threads", 0, 1024),
                                ("data_seed", 0, 2**32 - 1)):
            if not low <= getattr(self, name) <= high:
                out.append((name, f"must be from {low:,} to {high:,}, got {getattr(self, name)}"))
        if not self.lr > 0:
            out.append(("lr", f"must be > 0, got {self.lr}"))
        if not 0 <= self.momentum < 1:
            out.append(("momentum", f"must be in [0, 1), got {self.momentum}"))
        if not self.weight_decay >= 0:
            out.append(("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        if not self.time_limit_s <= 10**7:
            out.append(("time_limit_s", f"must be at most 10,000,000 s, got {self.time_limit_s}"))
        if not self.time_limit_s >= 0:
            out.append(("time_limit_s", f"must be >= 0 (0 = no limit), got {self.time_limit_s}"))
        if not self.noise >= 0:
            out.append(("noise", f"must be >= 0, got {self.noise}"))
        if not 0 <= self.delay_s <= 86_400:
            out.append(("delay_s", f"must be in [0, 86400] seconds, got {self.delay_s}"))
        if self.task in ("cifar10", "cifar100") and self.train_size + self.val_size > CIFAR_TRAIN_IMAGES:
            out.append(("train_size", f"train_size + val_size must be <= {CIFAR_TRAIN_IMAGES:,} "
                                      f"(CIFAR's training images), got {self.train_size} + {self.val_size}"))
        if self.task != "synthetic" and self.split == "val" and self.val_size == 0:
            out.append(("val_size", "must be >= 1 when split is val (the accuracy is measured on it)"))
        if self.task == "table" and not str(self.table).strip():
            out.append(("table", "task table replays a table file: name it, e.g. table: tables/mnist1d-150.json"))
        if self.task != "table" and str(self.table).strip():
            out.append(("table", f"only task table reads a table; task {self.task} got table {self.table!r}"))
        if self.task == "synthetic" and isinstance(self.target, str):
            from evaluator.synthetic import synthetic_target_problem

            problem = synthetic_target_problem(self.target)
            if problem:
                out.append(("target", problem))
        return out

    @property
    def resolved_model(self) -> str:
        """The model name with "auto" replaced by the task's standard child."""
        return DEFAULT_MODEL.get(self.task, "none") if self.model == "auto" else self.model

    @property
    def resolved_train_size(self) -> int:
        """Training examples, with 0 replaced by the task's standard."""
        if self.train_size:
            return self.train_size
        if self.task in ("cifar10", "cifar100"):
            return CIFAR_TRAIN_IMAGES - self.val_size
        return DEFAULT_TRAIN_SIZE.get(self.task, 0)
