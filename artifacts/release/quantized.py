"""Quantized variants in a release: calibration plans and top-1 agreement with the fp32 model.

The zoo published AlexNet-int8 (QOperator) and AlexNet-qdq (QDQ) made from the opset-12 model.
Their test sets hold their own outputs, as the zoo's did; their parity record is instead the share
of inputs on which they pick the same top class as the fp32 model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zooforge.artifacts.quantization.quantize import QuantizeSettings, Reader, model_input
from zooforge.versioning.runtime import ONNXRUNTIME, Session

QUANTIZATION_OPSET = 12


@dataclass(frozen=True)
class QuantizationPlan:
    """Where calibration inputs come from: a dataset through a preset, or seeded uniform inputs."""

    model: Path
    calibration: Path | None
    preprocess: str | None
    low: float
    high: float

    def reader(self, settings: QuantizeSettings) -> tuple[Reader, str]:
        name, dims = model_input(self.model)
        if self.calibration is not None:
            from zooforge.artifacts.quantization.datasets import deterministic_subset, load_dataset
            from zooforge.artifacts.quantization.preprocess import CalibrationReader, get_preset

            dataset = load_dataset(self.calibration)
            preprocess = get_preset(self.preprocess, dims)
            indices = deterministic_subset(dataset, settings.samples, settings.seed)
            return (CalibrationReader(dataset, preprocess, name, indices, dims),
                    f"{len(indices)} images of {Path(self.calibration).name} (seed {settings.seed}, "
                    f"preprocessing {self.preprocess})")
        from zooforge.artifacts.quantization.preprocess import SeededReader

        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        return (SeededReader(name, shape, self.low, self.high, settings.samples, settings.seed),
                f"{settings.samples} seeded inputs uniform in [{self.low:g}, {self.high:g}) (no calibration data)")

    def digest(self, settings: QuantizeSettings) -> str:
        """``calibration_sha256``: the calibration images' file digests, or the seeded recipe."""
        from zooforge.converters.lineage import calibration_digest

        if self.calibration is None:
            return calibration_digest(recipe={"low": self.low, "high": self.high, "samples": settings.samples,
                                              "seed": settings.seed})
        from zooforge.artifacts.quantization.datasets import deterministic_subset, load_dataset
        from zooforge.artifacts.release.manifest import sha256_file

        dataset = load_dataset(self.calibration)
        indices = deterministic_subset(dataset, settings.samples, settings.seed)
        files = _dataset_files(dataset, indices)
        return calibration_digest(file_digests=[sha256_file(path) for path in files])

    def calibration_feeds(self, settings: QuantizeSettings) -> list[dict[str, np.ndarray]]:
        reader, _ = self.reader(settings)
        feeds = []
        while (feed := reader.get_next()) is not None:
            feeds.append(feed)
        return feeds


def quantization_plan(options, model: Path) -> QuantizationPlan:  # noqa: ANN001 - ReleaseOptions
    if options.calibration is not None and options.preprocess is None:
        from zooforge.artifacts.quantization.quantize import QuantizationError

        raise QuantizationError("calibration images need a preprocessing preset (--preprocess)")
    return QuantizationPlan(model, options.calibration, options.preprocess, options.recipe.low, options.recipe.high)


def top1_agreement(fp32: Path, quantized: Path, feeds: Sequence[dict[str, np.ndarray]],
                   test_count: int) -> dict[str, dict[str, int]]:
    """How often ``quantized`` picks the fp32 model's top class, on test and calibration inputs."""
    reference, candidate = Session(ONNXRUNTIME, fp32), Session(ONNXRUNTIME, quantized)
    name, _ = model_input(fp32)
    agree = []
    for feed in feeds:
        (value,) = feed.values()
        a = next(iter(reference.run({name: value}).values()))
        b = next(iter(candidate.run({name: value}).values()))
        agree.append(bool(np.argmax(a) == np.argmax(b)))
    return {
        "test": {"agree": sum(agree[:test_count]), "total": test_count},
        "calibration": {"agree": sum(agree[test_count:]), "total": len(agree) - test_count},
    }


def _dataset_files(dataset, indices: Sequence[int]) -> list[Path]:  # noqa: ANN001
    """The files behind the chosen samples: image files, or the dataset's idx files for MNIST."""
    entries = getattr(dataset, "entries", None)
    if entries is not None:
        return [entries[i].path for i in indices]
    return sorted(p for p in Path(dataset.root).iterdir() if p.is_file())
