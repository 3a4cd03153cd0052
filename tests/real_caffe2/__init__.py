"""Real Caffe2 as an oracle: the historical runtime, translator and frontend, in their own interpreter.

The historical toolchain (torch 1.10.2 on Python 3.8) is built by ``shared/tools/
caffe2-historical-setup.sh`` into ``$ZOOFORGE_CAFFE2_ROOT`` (default: the script's own default,
``${XDG_CACHE_HOME:-~/.cache}/caffe2-historical``). ``RealCaffe2`` starts ``runner.py`` there once
and sends it requests; zooforge itself never imports torch. ``environment()`` builds the toolchain
when it is missing and a Python 3.8 exists, and otherwise says why it cannot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shared_paths import SHARED

RUNNER = Path(__file__).with_name("runner.py")
SETUP_SCRIPT = SHARED / "tools" / "caffe2-historical-setup.sh"
ROOT_VARIABLE = "ZOOFORGE_CAFFE2_ROOT"


class Unavailable(Exception):
    """Real Caffe2 cannot be had on this machine (the message says why)."""


class RealCaffe2Error(Exception):
    """Real Caffe2 refused or failed a request (its own message)."""


@dataclass(frozen=True)
class Environment:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "venv38" / "bin" / "python"

    @property
    def pythonpath(self) -> Path:
        return self.root / "bvlc"

    def usable(self) -> bool:
        if not self.python.is_file():
            return False
        probe = subprocess.run(
            [str(self.python), "-c", "import caffe2.python.workspace, caffe2.python.caffe_translator, "
             "caffe2.python.onnx.frontend, caffe.proto.caffe_pb2"],
            env=self.env(), capture_output=True, timeout=300,
        )
        return probe.returncode == 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = str(self.pythonpath)
        env["GLOG_minloglevel"] = "2"
        return env


def default_root() -> Path:
    if os.environ.get(ROOT_VARIABLE):
        return Path(os.environ[ROOT_VARIABLE])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "caffe2-historical"


def python38() -> str | None:
    """A Python 3.8 interpreter, found as the setup script finds one ($PY, pyenv, PATH)."""
    candidates = [os.environ.get("PY", "")]
    if shutil.which("pyenv"):
        listed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        candidates += [f"{root}/versions/{v}/bin/python" for v in listed if v == "3.8" or v.startswith("3.8.")]
    candidates.append(shutil.which("python3.8") or "")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            check = subprocess.run([candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 8))"],
                                   capture_output=True)
            if check.returncode == 0:
                return candidate
    return None


def environment(build: bool = True) -> Environment:
    """The historical toolchain, built first if it is missing (1-3 minutes, needs the package index)."""
    env = Environment(default_root())
    if env.usable():
        return env
    interpreter = python38()
    if interpreter is None:
        raise Unavailable("no Python 3.8 interpreter ($PY, pyenv or python3.8 on PATH) for the historical "
                          "Caffe2 toolchain (torch 1.10.2 has no wheel for newer Pythons)")
    if not SETUP_SCRIPT.is_file():
        raise Unavailable(f"{SETUP_SCRIPT} (shared material) is absent, so real Caffe2 cannot be built")
    if not build:
        raise Unavailable(f"real Caffe2 is not built in {env.root}; run {SETUP_SCRIPT} {env.root}")
    log = env.root.parent / f"{env.root.name}-setup.log"
    env.root.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        done = subprocess.run(["bash", str(SETUP_SCRIPT), str(env.root)], stdout=handle, stderr=subprocess.STDOUT,
                              env={**os.environ, "PY": interpreter}, timeout=1800)
    if done.returncode != 0 or not env.usable():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"building real Caffe2 in {env.root} failed (log {log}): " + " | ".join(tail))
    return env


class RealCaffe2:
    """One long-lived historical interpreter running ``runner.py``; requests go one at a time."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.scratch = Path(tempfile.mkdtemp(prefix="zooforge-real-caffe2-"))
        self._process: subprocess.Popen | None = None
        self._reply = None

    def _start(self) -> None:
        read, write = os.pipe()
        self._process = subprocess.Popen(
            [str(self.env.python), str(RUNNER), "--reply-fd", str(write)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self.env.env(), pass_fds=(write,), text=True,
        )
        os.close(write)
        self._reply = os.fdopen(read, "r")

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        if self._process is None or self._process.poll() is not None:
            self._start()
        assert self._process is not None and self._process.stdin is not None and self._reply is not None
        self._process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self._process.stdin.flush()
        line = self._reply.readline()
        if not line:  # the interpreter died (a C++ abort): report it and start afresh next time
            code = self._process.wait()
            self._process = None
            raise RealCaffe2Error(f"real Caffe2 crashed on {cmd} (exit status {code})")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RealCaffe2Error(answer["error"])
        return answer

    def versions(self) -> dict[str, str]:
        return self.request("versions")

    def schemas(self, operators: Iterable[str]) -> dict[str, tuple[int, int, int, int]]:
        """(min inputs, max inputs, min outputs, max outputs) of each operator real Caffe2 registers."""
        answer = self.request("schemas", operators=sorted(operators))["schemas"]
        return {name: tuple(limits) for name, limits in answer.items()}

    def run_files(self, predict_net: Path, init_net: Path, feeds: Mapping[str, np.ndarray],
                  fetch: Iterable[str] | str | None = None) -> dict[str, np.ndarray]:
        """Run a NetDef pair on real Caffe2; ``fetch="*"`` returns every blob an operator wrote."""
        work = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            np.savez(work / "feeds.npz", **{k: np.asarray(v) for k, v in feeds.items()})
            self.request("run", predict_net=str(predict_net), init_net=str(init_net), feeds=str(work / "feeds.npz"),
                         out=str(work / "out.npz"), fetch=fetch if fetch is None or fetch == "*" else list(fetch))
            with np.load(work / "out.npz") as values:
                return {name: values[name] for name in values.files}
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def run(self, model: Any, feeds: Mapping[str, np.ndarray],
            fetch: Iterable[str] | str | None = None) -> dict[str, np.ndarray]:
        """Run a zooforge ``Caffe2Model`` exactly as ``write_caffe2`` writes it."""
        from zooforge.converters.caffe2.netdef import write_caffe2

        work = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            paths = write_caffe2(model, work)
            return self.run_files(paths["predict_net"], paths["init_net"], feeds, fetch)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def translate(self, prototxt: Path, caffemodel: Path, out_dir: Path) -> tuple[Path, Path]:
        """The historical caffe_translator: (predict_net.pb, init_net.pb) in ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        predict, init = out_dir / "predict_net.pb", out_dir / "init_net.pb"
        self.request("translate", prototxt=str(prototxt), caffemodel=str(caffemodel),
                     predict_net=str(predict), init_net=str(init))
        return predict, init

    def frontend(self, predict_net: Path, init_net: Path, value_info: Mapping[str, tuple[int, list[int]]],
                 out: Path) -> Path:
        """The historical onnx-caffe2 frontend (opset 9) on a NetDef pair."""
        self.request("frontend", predict_net=str(predict_net), init_net=str(init_net),
                     value_info={k: [int(v[0]), [int(d) for d in v[1]]] for k, v in value_info.items()}, out=str(out))
        return out

    def close(self) -> None:
        if self._process is not None:
            if self._process.stdin:
                self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        if self._reply is not None:
            self._reply.close()
            self._reply = None
        shutil.rmtree(self.scratch, ignore_errors=True)
