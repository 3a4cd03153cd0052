"""Accuracy and latency of float and quantized classifiers on one labelled dataset.

Every model runs on onnxruntime's CPU provider at batch 1. Each image is preprocessed once and the
same tensor is fed to every model, so the models are compared on identical inputs. Latency is the
median of a bounded number of timed runs (after warm-up runs) over a small fixed set of those
tensors, measured twice per model: with one intra-op thread and with all threads.

The first model is the reference (the fp32 model); each later one is compared with it the way the
ONNX model zoo worded it: "int8's top-1 accuracy drop ratio is 0.22%, top-5 accuracy drop ratio
is 0.05% and performance improvement is 2.26x", where a drop ratio is (fp32 - model) / fp32 in
percent and the improvement is fp32's one-thread median latency over the model's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zooforge.converters.errors import InputFileError, ZooforgeError

__all__ = ["Comparison", "EvalReport", "EvaluationError", "ModelScore", "evaluate", "measure_latency"]

TOP_K = 5
WARMUP_RUNS = 5
TIMED_RUNS = 50
#: Latency is measured on (at most) this many of the evaluated inputs, cycled.
LATENCY_INPUTS = 10


class EvaluationError(ZooforgeError):
    """A model cannot be evaluated on this dataset (shape, outputs, labels)."""


@dataclass(frozen=True)
class ModelScore:
    """One model's results."""

    name: str
    path: str
    samples: int
    top1_correct: int
    top5_correct: int
    latency_1thread_ms: float
    latency_all_threads_ms: float

    @property
    def top1(self) -> float:
        return self.top1_correct / self.samples if self.samples else 0.0

    @property
    def top5(self) -> float:
        return self.top5_correct / self.samples if self.samples else 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "samples": self.samples,
            "top1": self.top1,
            "top5": self.top5,
            "top1_correct": self.top1_correct,
            "top5_correct": self.top5_correct,
            "latency_1thread_ms": self.latency_1thread_ms,
            "latency_all_threads_ms": self.latency_all_threads_ms,
        }


@dataclass(frozen=True)
class Comparison:
    """A model against the reference (first) model."""

    name: str
    reference: str
    top1_drop_percent: float | None  # None where the reference scores 0: no ratio to it exists
    top5_drop_percent: float | None
    speedup: float | None  # None where the model's latency was not measured

    def sentence(self, with_speed: bool = True) -> str:
        """The seed's sentence; without the speed-up (machine-dependent) for reproducible releases."""
        accuracy = (f"{self.name}'s top-1 accuracy drop ratio is {_percent(self.top1_drop_percent)}"
                    f"{',' if with_speed else ' and'} top-5 accuracy drop ratio is {_percent(self.top5_drop_percent)}")
        speed = "unmeasured" if self.speedup is None else f"{self.speedup:.2f}x"
        return accuracy + (f" and performance improvement is {speed}" if with_speed else "")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "reference": self.reference,
            "top1_drop_percent": self.top1_drop_percent,
            "top5_drop_percent": self.top5_drop_percent,
            "speedup": self.speedup,
            "sentence": self.sentence(),
        }


@dataclass
class EvalReport:
    """Scores of every model, in the order given; the first is the reference."""

    models: list[ModelScore]
    dataset: str
    preprocess: str
    samples: int
    threads_all: int | None
    warmup_runs: int = WARMUP_RUNS
    timed_runs: int = TIMED_RUNS
    latency_inputs: int = 0
    notes: list[str] = field(default_factory=list)

    def comparisons(self) -> list[Comparison]:
        if not self.models:
            return []
        base = self.models[0]
        return [
            Comparison(
                name=m.name,
                reference=base.name,
                top1_drop_percent=_drop(base.top1, m.top1),
                top5_drop_percent=_drop(base.top5, m.top5),
                speedup=base.latency_1thread_ms / m.latency_1thread_ms if m.latency_1thread_ms else None,
            )
            for m in self.models[1:]
        ]

    def sentences(self) -> list[str]:
        """The zoo-style comparison sentence of each model after the first."""
        return [c.sentence() for c in self.comparisons()]

    def sentence(self) -> str:
        """All comparison sentences, one a line."""
        return "\n".join(self.sentences())

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "preprocess": self.preprocess,
            "samples": self.samples,
            "latency": {
                "batch": 1,
                "warmup_runs": self.warmup_runs,
                "timed_runs": self.timed_runs,
                "inputs": self.latency_inputs,
                "statistic": "median",
                "threads_all": self.threads_all if self.threads_all else "onnxruntime default",
            },
            "models": [m.to_dict() for m in self.models],
            "comparisons": [c.to_dict() for c in self.comparisons()],
            "notes": list(self.notes),
        }


def _drop(reference: float, value: float) -> float | None:
    return (reference - value) / reference * 100.0 if reference else None


def _percent(drop: float | None) -> str:
    return "undefined (the reference scores 0)" if drop is None else f"{drop:.2f}%"


def evaluate(
    models: Sequence[Path],
    dataset,  # noqa: ANN001 - zooforge.artifacts.quantization.datasets.Dataset
    preprocess,  # noqa: ANN001 - zooforge.artifacts.quantization.preprocess.Preprocess
    limit: int | None,
    threads_all: int | None = None,
    progress: Callable[[int], None] | None = None,
    names: Sequence[str] | None = None,
    timed_runs: int = TIMED_RUNS,
    warmup_runs: int = WARMUP_RUNS,
) -> EvalReport:
    """Top-1/top-5 accuracy and batch-1 latency of each model over ``dataset``.

    ``limit`` evaluates only the first ``limit`` samples in the dataset's own (deterministic)
    order; ``threads_all`` is the intra-op thread count of the "all threads" latency (``None``:
    onnxruntime's default, one per physical core). ``progress(n)`` is called after every ``n``
    samples evaluated. ``names`` label the models (default: the file names without ``.onnx``).
    """
    paths = [Path(m) for m in models]
    if not paths:
        raise EvaluationError("give at least one model to evaluate")
    for path in paths:
        if not path.is_file():
            raise InputFileError(f"ONNX model {path} does not exist")
    labels = list(names) if names is not None else _names(paths)
    if len(labels) != len(paths):
        raise EvaluationError(f"{len(labels)} names for {len(paths)} models")
    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit must be at least 1, not {limit}")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise EvaluationError(f"dataset {dataset.root} holds no samples")

    sessions = [_session(path, threads_all) for path in paths]
    feeds = [_feed_name(session, path) for session, path in zip(sessions, paths)]
    classes = [_classes(session, path) for session, path in zip(sessions, paths)]

    top1 = [0] * len(paths)
    top5 = [0] * len(paths)
    latency_inputs: list[np.ndarray] = []
    for index in range(count):
        sample = dataset[index]
        tensor = preprocess.apply(sample.image)
        if index == 0:
            for session, path in zip(sessions, paths):
                _check_input_shape(session, path, tensor)
        if len(latency_inputs) < LATENCY_INPUTS:
            latency_inputs.append(tensor)
        for k, (session, feed, n_classes) in enumerate(zip(sessions, feeds, classes)):
            (scores,) = session.run(None, {feed: tensor})
            scores = np.asarray(scores).reshape(-1)
            if sample.label >= scores.size:
                raise EvaluationError(f"sample {sample.name} has label {sample.label} but {paths[k]} "
                                      f"scores only {scores.size} classes")
            ranked = np.argsort(-scores, kind="stable")[:TOP_K]
            top1[k] += int(ranked[0] == sample.label)
            top5[k] += int(sample.label in ranked)
        if progress is not None:
            progress(1)

    scores_out = []
    for k, path in enumerate(paths):
        single = _session(path, 1)
        many = sessions[k]
        scores_out.append(ModelScore(
            name=labels[k],
            path=str(path),
            samples=count,
            top1_correct=top1[k],
            top5_correct=top5[k],
            latency_1thread_ms=_median_latency(single, feeds[k], latency_inputs, warmup_runs, timed_runs),
            latency_all_threads_ms=_median_latency(many, feeds[k], latency_inputs, warmup_runs, timed_runs),
        ))
        del single
    describe = getattr(preprocess, "describe", None)
    return EvalReport(
        models=scores_out,
        dataset=f"{getattr(dataset, 'kind', 'dataset')} {getattr(dataset, 'root', '')}".strip(),
        preprocess=describe() if callable(describe) else repr(preprocess),
        samples=count,
        threads_all=threads_all,
        warmup_runs=warmup_runs,
        timed_runs=timed_runs,
        latency_inputs=len(latency_inputs),
    )


def _names(paths: list[Path]) -> list[str]:
    stems = [p.name[:-5] if p.name.endswith(".onnx") else p.name for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def _session(path: Path, threads: int | None):  # noqa: ANN202
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind types for unreadable models
        raise InputFileError(f"onnxruntime cannot load {path}: {str(exc).strip().splitlines()[0]}") from None


def _feed_name(session, path: Path) -> str:  # noqa: ANN001
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise EvaluationError(f"{path} has {len(inputs)} inputs; evaluation needs one image input")
    return inputs[0].name


def _classes(session, path: Path) -> int | None:  # noqa: ANN001
    outputs = session.get_outputs()
    if len(outputs) != 1:
        raise EvaluationError(f"{path} has {len(outputs)} outputs; evaluation needs one (1, classes) output")
    shape = outputs[0].shape
    if len(shape) != 2 or shape[0] not in (1, None) and not isinstance(shape[0], str):
        raise EvaluationError(f"{path}: output {outputs[0].name!r} has shape {shape}, not (1, classes)")
    return shape[1] if isinstance(shape[1], int) else None


def _check_input_shape(session, path: Path, tensor: np.ndarray) -> None:  # noqa: ANN001
    (graph_input,) = session.get_inputs()
    expected = graph_input.shape
    if len(expected) != tensor.ndim or any(
        isinstance(e, int) and e != t for e, t in zip(expected, tensor.shape)
    ):
        raise EvaluationError(f"the preprocessing gives {tuple(tensor.shape)} tensors but {path} takes "
                              f"{graph_input.name!r} of shape {tuple(expected)}")


def measure_latency(path: Path, inputs: Sequence[np.ndarray], threads: int | None = 1,
                    warmup: int = WARMUP_RUNS, runs: int = TIMED_RUNS) -> float:
    """Median batch-1 latency (ms) of the model at ``path`` with ``threads`` intra-op threads
    (``None``: onnxruntime's default), cycling through ``inputs``."""
    session = _session(Path(path), threads)
    return _median_latency(session, _feed_name(session, Path(path)), list(inputs), warmup, runs)


def _median_latency(session, feed: str, inputs: list[np.ndarray], warmup: int, runs: int) -> float:  # noqa: ANN001
    for i in range(warmup):
        session.run(None, {feed: inputs[i % len(inputs)]})
    times = []
    for i in range(runs):
        tensor = inputs[i % len(inputs)]
        start = time.perf_counter()
        session.run(None, {feed: tensor})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
