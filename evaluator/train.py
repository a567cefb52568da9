"""Training one child network with a candidate activation, and scoring it: ``train_child(settings, activation, seed)``.

Data flow: settings -> device -> data (cached per process) -> child (seeded init) -> SGD steps (seeded data order)
-> held-out accuracy -> result record. The same seed gives every candidate the same initial weights (activation
modules draw no random numbers) and the same batches, so results pair across candidates; on CPU a seed reproduces
a result bit for bit.

On CUDA the dataset lives on the GPU, batches are augmented there, the child runs channels_last under bf16 autocast
and is compiled with ``torch.compile``. On CPU none of that: it costs more than it saves there.
"""
from __future__ import annotations

import ctypes
import functools
import math
import sys
import time
import traceback

import torch
import torch.nn.functional as F
from torch import nn

from evaluator.activations import activation_factory, activation_kernel, activation_label
from evaluator.data import TaskData, load_task, random_crop_flip
from evaluator.models import build_model
from evaluator.result import ChildResult, one_line
from evaluator.settings import ChildSettings
from evaluator.tasks import task_named
from evaluator.user import clean_metrics, load_user_function, make_activation

TRAIN_LOSS_WINDOW = 20  # the reported training loss is the mean over this many final steps (one batch is noisy)
CUDA_CHECK_EVERY = 10  # on CUDA, reading the loss waits for the GPU: check for a non-finite loss every 10 steps
EVAL_BATCH = 1000


# ---------------------------------------------------------------- device and compilation

def resolve_device(setting: str) -> torch.device:
    """"auto" -> cuda when available, else cpu. Raises ``UserError`` when cuda is asked for and there is none."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from search.language.errors import UserError

            raise UserError("child.device: cuda asked for, but torch sees no CUDA device (use auto or cpu)")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _compile_whole_child(settings: ChildSettings, device: torch.device) -> bool:
    return settings.compile == "on" or (settings.compile == "auto" and device.type == "cuda")


def _bf16(settings: ChildSettings, device: torch.device) -> bool:
    return settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")


def _channels_last(settings: ChildSettings, device: torch.device) -> bool:
    images = task_named(settings.task).images
    return images and (settings.channels_last == "on" or (settings.channels_last == "auto" and device.type == "cuda"))


def _data_device(settings: ChildSettings, device: torch.device) -> torch.device:
    return torch.device("cpu") if settings.data_device == "cpu" else device


def _activation_compile(settings: ChildSettings) -> bool | None:
    # auto: the activation module's own default (fused on CUDA, native on CPU unless ACTSEARCH_COMPILE=1).
    return {"auto": None, "on": True, "off": False}[settings.compile]


def _kernel(settings: ChildSettings) -> str | None:
    # auto: the activation module's own choice (from the compile setting; native on CPU).
    return None if settings.kernel == "auto" else settings.kernel


# ---------------------------------------------------------------- the child and its optimiser

def build_child(settings: ChildSettings, activation: str, seed: int, device: torch.device,
                num_classes: int) -> nn.Module:
    """The task's child network with ``activation`` at every site, initialised from ``seed``, on ``device``.

    The initialisation draws from a forked copy of torch's generator, so the caller's random stream is untouched.
    Raises ``UserError`` for an unknown activation.
    """
    factory = activation_factory(activation, compile=_activation_compile(settings), kernel=_kernel(settings))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(settings.resolved_model, factory, num_classes)
    model = model.to(device)
    if _channels_last(settings, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def compile_child(model: nn.Module, settings: ChildSettings, sample: torch.Tensor) -> nn.Module:
    """``torch.compile(model)`` when the settings ask for it on this device, else ``model`` itself.

    One eager forward pass (eval mode: batch-norm statistics stay untouched) first builds the activation kernels, so
    the compiled graph does not have to.
    """
    if not _compile_whole_child(settings, sample.device):
        return model
    model.eval()
    with torch.no_grad():
        model(sample)
    model.train()
    return torch.compile(model, mode=None if settings.compile_mode == "default" else settings.compile_mode)


def make_optimizer(model: nn.Module, settings: ChildSettings) -> torch.optim.SGD:
    """SGD with Nesterov momentum; weight decay on conv and linear weights only (not biases, BN, betas, slopes)."""
    decay = [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0)


def learning_rate(step: int, settings: ChildSettings) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps`` (step counts from 0)."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    return 0.5 * settings.lr * (1 + math.cos(math.pi * (step - settings.warmup_steps) / span))


# ---------------------------------------------------------------- batches

class BatchStream:
    """Training batches in a seeded order: a fresh permutation per epoch, the last partial batch dropped.

    Works on the data's device (augmentation included); the generator lives there too.
    """

    def __init__(self, data: TaskData, batch_size: int, seed: int, augment: bool, device: torch.device | None = None,
                 channels_last: bool = False):
        self.data = data
        self.device = data.train_x.device
        self.target = self.device if device is None else device  # where the child runs
        self.channels_last = channels_last
        self.batch_size = min(batch_size, len(data.train_y))
        self.augment = augment and data.is_image
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.order = self._permutation()
        self.pos = 0

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(len(self.data.train_y), generator=self.generator, device=self.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = self._permutation(), 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        x = self.data.train_x[idx]
        if self.augment:
            x = random_crop_flip(x, self.generator)
        x, y = self.data.inputs(x), self.data.train_y[idx]
        if self.target != self.device:  # data on the host, child on the GPU: one copy per batch
            x, y = x.to(self.target, non_blocking=True), y.to(self.target, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


# ---------------------------------------------------------------- one step, and scoring

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               lr: float, bf16: bool | None = None) -> torch.Tensor:
    """One SGD step at learning rate ``lr`` (under bf16 autocast when ``bf16``; None: on CUDA); returns the batch loss
    (a detached tensor, not synchronised)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    bf16 = x.device.type == "cuda" if bf16 is None else bf16
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model: nn.Module, data: TaskData, device: torch.device | None = None, bf16: bool | None = None,
             channels_last: bool | None = None) -> float | None:
    """Accuracy on the held-out split in eval mode; None when the child's outputs are not finite. device: where the
    child runs (default: the data's device); bf16 / channels_last: as in training (None: on CUDA)."""
    device = data.eval_x.device if device is None else device
    on_cuda = device.type == "cuda"
    bf16 = on_cuda if bf16 is None else bf16
    channels_last = on_cuda if channels_last is None else channels_last
    model.eval()
    correct, finite = torch.zeros((), device=device), True
    for start in range(0, len(data.eval_y), EVAL_BATCH):
        x = data.inputs(data.eval_x[start:start + EVAL_BATCH]).to(device)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        finite = finite & torch.isfinite(logits).all()
        correct += (logits.argmax(1) == data.eval_y[start:start + EVAL_BATCH].to(device)).sum()
    model.train()
    if not bool(finite):
        return None
    return correct.item() / len(data.eval_y)


# ---------------------------------------------------------------- the child's whole life

def train_child(settings: ChildSettings, activation: str, seed: int,
                search_path: list[str] | None = None, report=None) -> ChildResult:
    """Train one child with ``activation`` (a baseline name or an expression text) from ``seed``; never raises.

    Returns the ``evaluator.result.ChildResult``: ``status`` "ok" | "diverged" (non-finite loss or outputs) |
    "failed" (an exception; ``error`` holds its message) | "timeout" (over ``settings.time_limit_s``); ``accuracy``
    on the ``split`` (None unless ok); ``train_loss`` (mean of the last steps); ``steps`` done; ``wall_s`` (the whole
    call); ``images_per_s`` (training steps after the first, which pays for compilation); ``device``; ``error``;
    ``activation`` (the baseline name or canonical expression); ``seed``; ``fault``: whose failure a non-ok status is,
    "candidate" (it diverged, or its math raised while training) or "system" (the worker could not load the data or
    set up, or the child ran out of time: both say more about the machine than the function), None when ok.
    The synthetic task returns ``evaluator.synthetic.evaluate_synthetic``'s result instead (no training), the table
    task ``evaluator.table_file.replay_child``'s; a user-defined child (``task`` "module:function" or
    "file.py:function", looked for in ``search_path`` too) returns ``train_user_child``'s, which adds the ``metrics``
    the function returned.

    ``report``: early stopping's reporter (``search.loop.fidelity.Reporter``; None: the child trains all its steps):
    the child reports its held-out score at each rung (``report.due(step)``) and stops when ``report(step, score)``
    says so, with the result ``stopped``.
    """
    task = task_named(settings.task)
    if task.user:
        return train_user_child(settings, activation, seed, search_path, report)
    evaluated = task.evaluate(settings, activation, seed, search_path, report)
    if evaluated is not None:  # synthetic, table: the task scores it
        return evaluated
    prepare_kernel(settings, activation)
    start = time.perf_counter()
    state = {"activation": activation, "seed": seed, "split": settings.split, "fault": "candidate"}
    try:
        result = _train(settings, state, start, report)
    except Exception as exc:  # a crashing candidate is a result, not a crash of the search
        result = ChildResult.failed(error=one_line(exc, where=True), **state)
    result.wall_s = time.perf_counter() - start
    return result


def prepare_kernel(settings: ChildSettings, activation: str) -> str | None:
    """Build or load what the child's activation runs with before the child's time limits start counting: the native
    kernel compiles once per machine (tens of seconds, minutes on an overloaded one), then loads in about a second
    per process. Returns the kernel (eager | compiled | native | torch); None for a bad activation or device, which
    is left for ``train_child`` to report as the child's result."""
    try:
        return activation_kernel(activation, resolve_device(settings.device), _activation_compile(settings),
                                 _kernel(settings))
    except Exception:
        return None


@functools.cache  # once per process
def steady_heap() -> bool:
    """Keep the memory a child frees in the process (glibc's malloc, Linux), once per process; whether it is kept.

    A child allocates and frees the same tensors every step. By glibc's defaults a block above a threshold that grows
    with the blocks freed (128 KiB at first) is mapped afresh, and freed memory at the top of the heap is handed back
    to the system: the next step faults it in again, page by page. A proxy child with the native activation kernel
    (whose forward allocates the values it saves) took 100 to 300 page faults a step, 6 to 12% of its time
    (docs/benchmarks.md); so blocks up to 32 MiB (glibc's largest threshold on 64-bit) come from the heap, which gives
    back nothing under 256 MiB free. Values are not changed; a worker keeps its peak memory until it exits."""
    if not sys.platform.startswith("linux"):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))
    except (OSError, AttributeError):  # not glibc (musl, ...): its defaults stand
        return False


def _device_name(device: torch.device) -> str:
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def _train(settings: ChildSettings, state: dict, start: float, report=None) -> ChildResult:
    """The body of ``train_child``: its result; keeps what is known so far in ``state`` (what a result of an exception
    raised here is built from); may raise."""
    activation, seed = state["activation"], state["seed"]
    state["activation"] = activation_label(activation)
    state["fault"] = "system"  # the device and the data are the worker's business, not the function's
    device = resolve_device(settings.device)
    state["device"] = _device_name(device)
    state["extra"] = {"kernel": activation_kernel(activation, device, _activation_compile(settings), _kernel(settings))}
    steady_heap()
    if settings.threads and device.type == "cpu":
        torch.set_num_threads(settings.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions once
    data = load_task(settings, _data_device(settings, device))
    state["fault"] = "candidate"  # from here on an exception or a divergence is the candidate's own
    model = build_child(settings, activation, seed, device, data.num_classes)
    bf16, channels_last = _bf16(settings, device), _channels_last(settings, device)
    stream = BatchStream(data, settings.batch_size, seed, settings.augment, device, channels_last)
    if _compile_whole_child(settings, device):
        # A worker compiles one child after another: past dynamo's recompile limit it would silently run eager.
        torch._dynamo.reset()
    sample = data.inputs(data.train_x[:2]).to(device)
    net = compile_child(model, settings, sample.contiguous(memory_format=torch.channels_last) if channels_last and
                        sample.dim() == 4 else sample)
    optimizer = make_optimizer(model, settings)

    limit = settings.time_limit_s
    on_cuda = device.type == "cuda"
    window = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    first_step_done = None
    for step in range(settings.steps):
        x, y = stream.next()
        loss = train_step(net, optimizer, x, y, learning_rate(step, settings), bf16)
        state["steps"] = step + 1
        if step >= settings.steps - TRAIN_LOSS_WINDOW:
            window += loss
        nonfinite |= ~torch.isfinite(loss)
        if (not on_cuda or step % CUDA_CHECK_EVERY == 0 or step == settings.steps - 1) and bool(nonfinite):
            return ChildResult.diverged(error=f"non-finite training loss by step {step + 1}", **_facts(state))
        if step == 0:
            if on_cuda:
                torch.cuda.synchronize(device)
            first_step_done = time.perf_counter()
        if report is not None and report.due(step + 1):
            score = evaluate(model, data, device, bf16, channels_last)
            if score is None:
                return ChildResult.diverged(error=f"non-finite outputs on the {settings.split} set at step {step + 1}",
                                            **_facts(state))
            if not report(step + 1, score):
                rung = report.stopped_at[0]
                facts = {k: v for k, v in _facts(state).items() if k != "steps"}
                return ChildResult.stopped(value=score, rung=rung, step=step + 1, **facts)
        if limit and time.perf_counter() - start > limit:
            return ChildResult.timeout(error=f"time limit of {limit:g} s reached after {step + 1} of "
                                             f"{settings.steps} steps", **_facts(state))
    if on_cuda:
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - first_step_done
    state["images_per_s"] = (settings.steps - 1) * stream.batch_size / train_s if settings.steps > 1 else None
    state["train_loss"] = window.item() / min(TRAIN_LOSS_WINDOW, settings.steps)
    accuracy = evaluate(model, data, device, bf16, channels_last)
    if accuracy is None:
        return ChildResult.diverged(error=f"non-finite outputs on the {settings.split} set", **_facts(state))
    return ChildResult.ok(accuracy=accuracy, **_facts(state))


def _facts(state: dict) -> dict:
    """What a result is built from, less the fault (each outcome's constructor says whose fault it is)."""
    return {k: v for k, v in state.items() if k != "fault"}


# ---------------------------------------------------------------- a user-defined child

def train_user_child(settings: ChildSettings, activation: str, seed: int,
                     search_path: list[str] | None = None, report=None) -> ChildResult:
    """One user-defined child (``evaluator.user``): ``child.task``'s function called with the ``Activation``, ``seed``,
    the device and ``child.options`` plus ``split``; never raises (not even for a ``sys.exit`` in the user's code).
    The result has the ``metrics`` the function returned (when it is a dict of numbers; at most
    ``evaluator.result.MAX_METRICS`` of them) and, when the function raised, the ``traceback`` (the driver writes it
    into run.log and keeps it out of the store). A function that cannot be loaded on this worker, or a device that is
    missing, is the system's fault; an exception of the function, or a return value that is not a dict of numbers, is
    the candidate's. With early stopping on, ``options["report"]`` is ``report(step, value) -> bool`` (value: the
    child's ``rewards.metric`` so far): the function reports at will and returns early when it answers False; the
    result is then ``stopped`` with that value. A child that never reports trains as it likes."""
    start = time.perf_counter()
    state = {"activation": activation, "seed": seed, "split": settings.split}
    try:
        fn = load_user_function(settings.task, search_path)
        device = resolve_device(settings.device)
        state["device"] = _device_name(device)
        if settings.threads and device.type == "cpu":
            torch.set_num_threads(settings.threads)
        act = make_activation(activation, compile=_activation_compile(settings))
        state["activation"] = act.name
    except (Exception, SystemExit) as exc:  # the worker cannot set up the user's code or the device: not the function
        return ChildResult.failed(error=one_line(exc), fault="system", wall_s=time.perf_counter() - start, **state)
    try:
        options = {**settings.options, "split": settings.split}
        if report is not None:
            options["report"] = report
        returned = fn(act, seed, device, options)
    except (Exception, SystemExit) as exc:  # the user's child raised: a result of this candidate, not a crash
        result = ChildResult.failed(error=one_line(exc), fault="candidate", traceback=traceback.format_exc(), **state)
    else:
        metrics, why = clean_metrics(returned)
        stopped = getattr(report, "stopped_at", None)
        if stopped is not None:  # the function was told to stop at a rung: that is its result
            rung, step, value = stopped
            result = ChildResult.stopped(value=value, rung=rung, step=step, metric=report.metric, **state)
        elif why:
            result = ChildResult.failed(error=why, fault="candidate", **state)
        else:
            scores = {key: metrics[key] for key in ("accuracy", "train_loss") if isinstance(metrics.get(key), float)}
            result = ChildResult.ok(metrics=metrics, **{"accuracy": None, **scores}, **state).bounded()
            steps = metrics.get("steps")
            if isinstance(steps, float) and 0 <= steps < 2 ** 53:  # the steps it says it trained
                result.steps = int(steps)
    result.wall_s = time.perf_counter() - start
    return result
