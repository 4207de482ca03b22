"""Train a CapsNet from the app: a worker thread per session, progress from a fragment.

The worker makes no st.* calls (a widget touch must not abort it): it only writes into
its `TrainingJob`, which lives in this session's state. A fragment that reruns itself
every second draws the job. Finished (or cancelled) runs are checkpoints under the runs
folder and can be made the session's active model.

What a server spends on trainings is bounded: a training stops when its browser session
has been gone for $CAPSVIZ_ABANDONED_SECONDS (default 30: a closed tab, not a network
blip), at most $CAPSVIZ_MAX_TRAININGS run at once on the server (default 2), and the runs
folder keeps the newest $CAPSVIZ_KEEP_RUNS app runs (default 10, and any a session is
training or showing; runs made with the command line are never touched).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from capsviz.checkpoint import load_checkpoint, save_checkpoint
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.data import DataUnavailableError, load_mnist
from capsviz.figures import viz
from capsviz.model import PAPER, CapsNetConfig
from capsviz.train import BatchEnd, Callback, EpochEnd, TrainConfig, clean_run_folders, train
from capsviz.ui import state
from capsviz.ui.resources import available_devices, open_runs, runs_dir, session_watch, torch_threads
from capsviz.ui.sidebar import run_option
from capsviz.ui.text import MAX_MESSAGE_CHARS, plain
from capsviz.ui.widgets import PLOT_CONFIG

REFRESH_SECONDS = 1.0
LOSS_POINTS = 2000  # keep the live curve light
MAX_TRAININGS_ENV, MAX_TRAININGS = "CAPSVIZ_MAX_TRAININGS", 2  # concurrent trainings per server
KEEP_RUNS_ENV, KEEP_RUNS = "CAPSVIZ_KEEP_RUNS", 10  # app runs kept in the runs folder (about 94 MB each)
ABANDONED_ENV, ABANDONED_SECONDS = "CAPSVIZ_ABANDONED_SECONDS", 30  # a session gone this long stops its training
APP_RUN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # the names start_job gives; other runs are never pruned
USABLE_ACCURACY = 0.5  # below this, "Use this model" asks first (chance is 0.1)
QUICK, CUSTOM = "Quick lesson", "Custom"
PRESETS = {  # widget values each preset sets; Custom leaves them to the user
    QUICK: {state.TRAIN_LIMIT: 2_000, state.TRAIN_EPOCHS: 1, state.TRAIN_BATCH: 32, state.TRAIN_EVAL_LIMIT: 1_000},
    "One epoch, all images": {
        state.TRAIN_LIMIT: 60_000,
        state.TRAIN_EPOCHS: 1,
        state.TRAIN_BATCH: 128,
        state.TRAIN_EVAL_LIMIT: 10_000,
    },
}
QUICK_MEASURED = (  # docs/bench/app-2026-11-23.json: python -m capsviz.bench --sections lesson (the app's thread)
    "about a minute on a 2-core CPU (50 s and 87.5% on the 1,000 test images on a 2-core AMD EPYC VM "
    "without a GPU, 2026-11-23)"
)


@dataclass
class TrainingJob:
    config: TrainConfig
    limit: int
    out_dir: Path
    stop: threading.Event = field(default_factory=threading.Event)
    status: str = "loading MNIST"
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    batches_done: int = 0
    batches_total: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (global batch, loss)
    epochs: list[EpochEnd] = field(default_factory=list)
    thread: threading.Thread | None = None
    model_config: CapsNetConfig = field(default_factory=CapsNetConfig)
    owner_alive: Callable[[], bool] = lambda: True  # is the browser session that started it still there?
    grace_seconds: float = ABANDONED_SECONDS
    owner_gone_since: float | None = None
    owner_left: bool = False  # stopped because its session was gone
    eval_done: int = 0  # test images evaluated after the current epoch
    eval_total: int = 0
    eval_started: float | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def active(self) -> bool:
        """Started or about to start, and not yet over: what counts against the server's cap."""
        return self.finished is None

    def abandoned(self) -> bool:
        """True once the owner session has been gone for `grace_seconds` (checked from the worker)."""
        if self.owner_alive():
            self.owner_gone_since = None
            return False
        self.owner_gone_since = self.owner_gone_since or time.time()
        return time.time() - self.owner_gone_since >= self.grace_seconds

    def remaining_seconds(self) -> float | None:
        if not self.batches_done or self.finished:
            return None
        elapsed = time.time() - self.started
        return elapsed / self.batches_done * (self.batches_total - self.batches_done)


class _JobCallback(Callback):
    def __init__(self, job: TrainingJob):
        self.job = job

    def on_batch_end(self, info: BatchEnd) -> None:
        job = self.job
        if job.abandoned():
            job.owner_left = True
            job.stop.set()  # train() returns before the next batch
            return
        job.status = f"training: epoch {info.epoch} of {job.config.epochs}"
        job.batches_total = info.num_batches * job.config.epochs
        job.batches_done = (info.epoch - 1) * info.num_batches + info.batch
        thinned = job.losses and job.batches_done - job.losses[-1][0] < 10  # at most one point per 10 batches
        if len(job.losses) < LOSS_POINTS or not thinned:
            job.losses.append((job.batches_done, info.loss))

    def on_epoch_end(self, info: EpochEnd) -> None:
        self.job.epochs.append(info)
        self.job.eval_started = None

    def on_eval_batch(self, done: int, total: int) -> None:
        job = self.job
        if job.eval_started is None or done < job.eval_done:
            job.eval_started = time.time()
        job.eval_done, job.eval_total = done, total
        job.status = f"evaluating epoch {len(job.epochs) + 1} on {total:,} test images"


def run_job(job: TrainingJob) -> None:
    """The worker thread's body: no streamlit calls, only writes to `job`."""
    try:
        root = os.environ.get("CAPSVIZ_DATA")
        train_split = load_mnist(root, train=True).head(job.limit)
        test_split = load_mnist(root, train=False)
        if job.stop.is_set():
            job.status = "cancelled"
            return
        result = train(
            train_split,
            test_split,
            job.out_dir,
            job.config,
            model_config=job.model_config,
            callbacks=[_JobCallback(job)],
            stop=job.stop,
        )
        job.status = "stopped: its browser session closed" if job.owner_left else result.status
    except DataUnavailableError as exc:
        job.status, job.error = "failed", str(exc)
    except Exception as exc:  # shown to the user instead of dying silently in a thread
        job.status, job.error = "failed", f"{exc.__class__.__name__}: {exc}"
    finally:
        job.finished = time.time()


class JobRegistry:
    """The server's trainings, shared by every session: admits at most `limit` at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._jobs: list[TrainingJob] = []
        self._lock = threading.Lock()

    def admit(self, job: TrainingJob) -> bool:
        with self._lock:
            self._jobs = [j for j in self._jobs if j.active]
            if len(self._jobs) >= self.limit:
                return False
            self._jobs.append(job)
            return True

    def active(self) -> list[TrainingJob]:
        with self._lock:
            return [j for j in self._jobs if j.active]


@st.cache_resource
def job_registry() -> JobRegistry:
    """One registry per server process (cache_resource is shared by all sessions)."""
    return JobRegistry(_env_count(MAX_TRAININGS_ENV, MAX_TRAININGS))


def _env_count(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def prune_runs(folder: Path, keep: int, protect: set[Path] = frozenset()) -> list[Path]:
    """Delete all but the newest `keep` app runs (by name, never a protected one); returns what went."""
    runs = sorted((p for p in folder.glob("*") if p.is_dir() and APP_RUN.fullmatch(p.name)), reverse=True)
    doomed = [p for p in runs[keep:] if p not in protect]
    for run in doomed:
        shutil.rmtree(run, ignore_errors=True)
    return doomed


def start_job(
    config: TrainConfig,
    limit: int,
    model_config: CapsNetConfig,
    *,
    jobs: JobRegistry,
    owner_alive: Callable[[], bool] = lambda: True,
) -> TrainingJob | None:
    """Start a training in a worker thread; None when the server already runs `jobs.limit` of them."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    grace = _env_count(ABANDONED_ENV, ABANDONED_SECONDS)
    job = TrainingJob(
        config,
        limit,
        runs_dir() / f"{stamp}-{uuid.uuid4().hex[:6]}",
        model_config=model_config,
        owner_alive=owner_alive,
        grace_seconds=grace,
    )
    if not jobs.admit(job):
        return None
    torch_threads()
    in_use = {j.out_dir for j in jobs.active()} | open_runs().folders()  # training, or shown by a session
    clean_run_folders(runs_dir())
    prune_runs(runs_dir(), max(_env_count(KEEP_RUNS_ENV, KEEP_RUNS) - 1, 0), in_use)
    job.thread = threading.Thread(target=run_job, args=(job,), daemon=True, name=f"capsviz-train-{job.out_dir.name}")
    job.thread.start()
    return job


def _apply_preset() -> None:
    preset = PRESETS.get(state.value(state.TRAIN_PRESET, QUICK))
    if preset is not None:
        for key, value in preset.items():
            state.put(key, value)


def training_tab() -> None:
    job: TrainingJob | None = st.session_state.get(state.TRAIN_JOB)
    busy = job is not None and job.running
    st.markdown(
        "Train a CapsNet on MNIST (the paper's architecture and loss, 2-px shift augmentation). "
        f"For a lesson, **{QUICK}** trains on 2,000 images and evaluates on 1,000 test images: "
        f"{QUICK_MEASURED}. On the same CPU, `python -m capsviz.bench` puts one epoch over all 60,000 "
        "images at about 13 minutes of training steps from the command line, plus the evaluation."
    )
    chosen = _settings(busy)
    left, right = st.columns(2)
    if left.button("Start training", key=state.TRAIN_START, disabled=busy, type="primary") and not busy:
        _start(chosen)
        return
    if right.button("Cancel", key=state.TRAIN_CANCEL, disabled=not busy) and job is not None:
        job.stop.set()
    if job is None:
        return
    if job.running:
        live_progress(job)
    else:
        draw_job(job)


@dataclass(frozen=True)
class _Chosen:
    """The training tab's settings, as its widgets show them."""

    epochs: int
    batch: int
    lr: float
    iters: int
    device: str
    limit: int
    eval_limit: int


def _settings(busy: bool) -> _Chosen:
    """The preset and the settings' widgets; a preset other than Custom fixes the ones it sets."""
    kept = state.widget
    presets = [*PRESETS, CUSTOM]
    preset = kept(
        st.radio, "Preset", presets, horizontal=True, key=state.TRAIN_PRESET, default=QUICK, on_change=_apply_preset,
        disabled=busy,
    )  # fmt: skip
    fixed = busy or preset != CUSTOM
    columns = st.columns(3)
    quick = PRESETS[QUICK]
    epochs = kept(
        columns[0].number_input, "Epochs", 1, 100, key=state.TRAIN_EPOCHS, default=quick[state.TRAIN_EPOCHS],
        disabled=fixed,
    )  # fmt: skip
    batch = kept(
        columns[1].selectbox, "Batch size", [32, 64, 128, 256], key=state.TRAIN_BATCH,
        default=quick[state.TRAIN_BATCH], disabled=fixed,
    )  # fmt: skip
    lr = kept(
        columns[2].number_input, "Learning rate", 1e-5, 1e-1, format="%.4f", key=state.TRAIN_LR, default=1e-3,
        step=1e-4, disabled=busy,
    )  # fmt: skip
    columns = st.columns(4)
    iters = kept(
        columns[0].slider, "Routing iterations", 1, MAX_ROUTING_ITERS, key=state.TRAIN_ITERS,
        default=PAPER.routing_iters, disabled=busy,
    )  # fmt: skip
    devices = available_devices()
    device = kept(
        columns[1].selectbox, "Device", devices, key=state.TRAIN_DEVICE, default=devices[0], fits=devices.__contains__,
        disabled=busy,
    )  # fmt: skip
    limit = kept(
        columns[2].number_input, "Training images", 100, 60_000, step=1000, key=state.TRAIN_LIMIT,
        default=quick[state.TRAIN_LIMIT], disabled=fixed,
    )  # fmt: skip
    eval_limit = kept(
        columns[3].number_input, "Test images evaluated", 100, 10_000, step=1000, key=state.TRAIN_EVAL_LIMIT,
        default=quick[state.TRAIN_EVAL_LIMIT], disabled=fixed,
    )  # fmt: skip
    return _Chosen(int(epochs), int(batch), float(lr), int(iters), device, int(limit), int(eval_limit))


def _start(chosen: _Chosen) -> None:
    """Start a job with these settings, unless the server already runs its limit of them."""
    config = TrainConfig(epochs=chosen.epochs, batch_size=chosen.batch, lr=chosen.lr, device=chosen.device,
                         eval_limit=chosen.eval_limit)  # fmt: skip
    model_config = CapsNetConfig(routing_iters=chosen.iters)
    started = start_job(config, chosen.limit, model_config, jobs=job_registry(), owner_alive=session_watch())
    if started is None:
        st.warning(
            f"This server already runs {job_registry().limit} training(s), its limit (${MAX_TRAININGS_ENV}): "
            "try again when one finishes."
        )
        return
    st.session_state[state.TRAIN_JOB] = started
    st.rerun()  # redraw the controls: inputs locked, Cancel enabled


@st.fragment(run_every=REFRESH_SECONDS)
def live_progress(job: TrainingJob) -> None:
    """Redraws itself every second while the worker runs; one full rerun when it ends."""
    draw_job(job)
    if not job.running:
        st.rerun(scope="app")  # the sidebar lists the new run, and the static view takes over


def draw_job(job: TrainingJob) -> None:
    """The run's progress, its live curves, and once it has ended what became of it."""
    _progress_bars(job)
    if job.error:
        st.error(plain(job.error, MAX_MESSAGE_CHARS))  # an exception's words, which may quote any path
    if job.losses or job.epochs:
        st.plotly_chart(
            viz.training_figure(job.losses, [(e.epoch, e.test_accuracy) for e in job.epochs], job.batches_total),
            config=PLOT_CONFIG,
            key="fig_training",
        )
    if not job.running:
        _ended(job)


def _progress_bars(job: TrainingJob) -> None:
    """Training's bar (elapsed, time left), and evaluation's while the test set is read."""
    elapsed = (job.finished or time.time()) - job.started
    fraction = job.batches_done / job.batches_total if job.batches_total else 0.0
    remaining = job.remaining_seconds()
    evaluating = job.running and job.eval_started is not None
    text = f"{job.status} | elapsed {_clock(elapsed)}"
    if remaining and not evaluating:
        text += f" | training ~{_clock(remaining)} left, then evaluation on {job.config.eval_limit or 10_000:,} images"
    st.progress(min(fraction, 1.0), text=text)
    if evaluating:
        eval_left = eval_remaining_seconds(job.eval_done, job.eval_total, time.time() - job.eval_started)
        st.progress(
            job.eval_done / max(job.eval_total, 1),
            text=f"evaluation: {job.eval_done:,} of {job.eval_total:,} test images"
            + (f", ~{_clock(eval_left)} left" if eval_left is not None else ""),
        )


def _ended(job: TrainingJob) -> None:
    """A saved run offers itself for use (after a warning when weak) and for download; else why nothing is."""
    checkpoint = job.out_dir / "last.safetensors"
    if checkpoint.exists():
        accuracy = job.epochs[-1].test_accuracy if job.epochs else None
        measured = f" Test accuracy after the last epoch: **{accuracy:.2%}** of {job.eval_total:,} test images." if (
            accuracy is not None and job.eval_total) else ""  # fmt: skip
        st.success(f"Run {job.status}: {len(job.epochs)} epoch(s) saved to `{checkpoint}`.{measured}")
        weak = accuracy is not None and accuracy < USABLE_ACCURACY
        if weak:
            st.warning(
                f"This model gets {accuracy:.1%} of the test images right (chance is 10%): its views will mostly "
                "show noise. Train longer or on more images, or use it anyway to see what an untrained network does.",
                icon=":material/warning:",
            )
        anyway = state.widget(st.checkbox, "Use it anyway", key=state.TRAIN_USE_ANYWAY, default=False) if weak else True
        st.button(
            "Use this model", key=state.TRAIN_USE, on_click=_use_run, args=(job.out_dir.name,), disabled=not anyway
        )
        st.download_button(
            "Download the weights (no optimizer state)",
            data=lambda: weights_only(checkpoint),  # built on click only
            file_name=f"capsviz-{job.out_dir.name}.safetensors",
            key=state.TRAIN_DOWNLOAD,
            help="About a third of the run's checkpoint, which also holds Adam's state; loads back as a checkpoint.",
        )
    elif job.status == "cancelled" and not job.epochs:
        st.warning("Cancelled before the first epoch was evaluated: nothing was saved.")
    elif job.epochs:  # it was saved: another session's training pruned it since
        st.warning(
            f"This run's checkpoint is gone from `{job.out_dir}`: the app keeps only its newest runs, and a "
            "training started since removed it."
        )


def weights_only(checkpoint: Path) -> bytes:
    """The run's model and card as a checkpoint without the optimizer's state."""
    model, card = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        return save_checkpoint(Path(folder) / "weights.safetensors", model, card).read_bytes()


def eval_remaining_seconds(done: int, total: int, seconds: float) -> float | None:
    """Time left in an evaluation at the rate so far; None before the first batch."""
    if done <= 0:
        return None
    return seconds / done * (total - done)


def _use_run(run_name: str) -> None:
    st.session_state[state.CHECKPOINT_CHOICE] = run_option(run_name)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
