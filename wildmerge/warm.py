"""A warm worker for local runs: the heavy libraries imported once, one forked child per job.

A fresh Python process pays ~2 s of CPU to import torch and 3-5 s more for transformers'
modeling stack, mergekit or lm-eval, while a demo merge or evaluation does about 1 s of
work. For a local run (``snakemake --cores N``) the Snakefile starts one *server* that
imports those libraries and then waits on a Unix socket; every ``merge``, ``evaluate`` and
demo-training job calls :func:`run_warm` first thing, which hands the job to the server:
it forks a child (copy-on-write, already imported), which takes the job's stdin/stdout/
stderr, working directory, environment and ``sys.path``, runs the job's script from the
top (where :func:`run_warm` now returns at once) and reports the exit status. The job
process waits for it, so Snakemake sees an ordinary job (outputs, exit status, log file).

A job may ask the server to *prepare* first (``run_warm(prepare=...)``): a function the server
calls itself before forking that job, so the job and every later one inherit what it loaded
(an evaluation job: its ~100 benchmark datasets, which each job would otherwise load twice).

Without a server (a cluster job, ``WILDMERGE_WARM=0``, an environment that differs in a
variable read at import, the server gone) :func:`run_warm` returns and the job runs in its
own process as before. The server stops when Snakemake closes its stdin (``stop``) or
exits. Each child is its own process group; when its job process dies (Snakemake killed
it), the child's group is killed too. Snakemake's ``benchmark:`` files then measure only
the waiting job process: the child's CPU time is written to stderr at the end.

Only the standard library is imported here: this module runs before anything heavy.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["PRELOAD", "SOCKET_ENV", "TASK_INDEX_STAGE", "enabled", "fingerprint", "run_warm", "serve", "start", "stop"]

#: the job process finds the server's socket here (exported by the Snakefile's ``onstart``)
SOCKET_ENV = "WILDMERGE_WARM_SOCKET"
#: ``WILDMERGE_WARM=0`` runs every job in its own process
ENABLE_ENV = "WILDMERGE_WARM"

#: imported by the server in stages; a job arriving between stages is forked at once (and
#: imports the rest itself): demo training needs only the first stage. ``module:function``
#: imports the module and calls the function (no arguments): state the jobs then inherit
PRELOAD: tuple[tuple[str, ...], ...] = (
    (
        "torch",
        "transformers",
        "transformers.modeling_utils",
        "transformers.models.auto.modeling_auto",
        "transformers.models.llama.modeling_llama",
        "transformers.tokenization_utils_fast",
        "safetensors.torch",
        "snakemake.iocontainers",
        "snakemake.logging",
    ),
    (
        "mergekit.merge",
        "mergekit.config",
        "mergekit.options",
        "mergekit.merge_methods",
        "lm_eval",
        "lm_eval.evaluator",
        "lm_eval.tasks",
        "lm_eval.models.huggingface",
        "wildmerge.evaluation.continuation_lm",
        "datasets",
    ),
)

#: a last stage for studies scoring lm-eval's built-in tasks (no evaluation.include_path; the
#: Snakefile adds it): lm-eval's index of its ~10k task YAMLs, otherwise built by every
#: evaluation job (seconds of CPU each), built once in the server and inherited by the jobs
TASK_INDEX_STAGE: tuple[str, ...] = ("wildmerge.evaluation.lm_eval_run:preload_task_index",)

#: variables read at import time by the preloaded libraries (a job whose value differs from
#: the server's runs on its own); the thread counts Snakemake sets per job are excluded:
#: jobs set torch's thread count themselves
_FINGERPRINT_PREFIXES = (
    "HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "TOKENIZERS",
    "DATASETS", "LM_EVAL", "MERGEKIT", "PYTHON", "LD_", "XDG_", "HOME", "KMP_", "MPLCONFIGDIR",
)
_PER_JOB = {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"}  # the server is offline: so are these jobs

#: set in a forked child: run_warm() returns there
_IN_WORKER = False
_MAX_MESSAGE = 16 << 20


def enabled(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ENABLE_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def fingerprint(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """What a job process must share with the server to be forked from it."""
    env = os.environ if environ is None else environ
    return {
        "python": [sys.executable, sys.prefix, sys.version],
        "env": {k: v for k, v in sorted(env.items()) if k.startswith(_FINGERPRINT_PREFIXES) and k not in _PER_JOB},
    }


def _send(sock: socket.socket, obj: Any, fds: Sequence[int] = ()) -> None:
    data = json.dumps(obj).encode()
    frame = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [frame], list(fds))
    else:
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, n: int, fds: list[int] | None = None) -> bytes:
    buf = b""
    while len(buf) < n:
        if fds is not None and not buf:
            chunk, got, _, _ = socket.recv_fds(sock, n - len(buf), 3)
            fds.extend(got)
        else:
            chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def _recv(sock: socket.socket, fds: list[int] | None = None) -> Any:
    (size,) = struct.unpack("!I", _recv_exact(sock, 4, fds))
    if size > _MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes")
    return json.loads(_recv_exact(sock, size))


# --- the job side ------------------------------------------------------------------------


def run_warm(snakemake: Any = None, prepare: tuple[str, Sequence[Any]] | None = None) -> None:
    """Hand this job to the run's warm server and exit with the child's status.

    Returns (and the caller runs the job itself) in the forked child, and whenever no
    server can take the job. Call it first in a job script, before importing anything heavy.

    ``prepare``: ``("module:function", [arguments])`` (JSON values), called by the server itself
    before it forks the job, so that this job and later ones inherit what it loads (e.g. the
    job's benchmark datasets). It must be idempotent and cheap when repeated; its failure is
    only logged: the job then does the work itself.
    """
    if _IN_WORKER or not enabled():
        return
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return
    fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
    request = {
        "script": os.path.abspath(sys.argv[0]),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "sys_path": sys.path,
        "fds": fds,
        "fingerprint": fingerprint(),
        "prepare": list(prepare) if prepare else None,
    }
    try:
        _send(sock, request, fds)
        reply = _recv(sock)
    except (OSError, EOFError, ValueError):
        sock.close()
        return
    if not reply.get("accepted"):
        print(f"wildmerge.warm: running here ({reply.get('reason')})", file=sys.stderr)
        sock.close()
        return
    # from here the child runs the job: its exit status is this process's
    try:
        result = _recv(sock)
        code = int(result["exit"])
    except (OSError, EOFError, ValueError, KeyError):
        print("wildmerge.warm: the worker running this job died without an exit status", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# --- the server side ---------------------------------------------------------------------


def _import_stage(modules: Sequence[str]) -> None:
    started, done = time.perf_counter(), []
    for name in modules:
        try:
            module, _, function = name.partition(":")
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
            done.append(name)
        except Exception as err:  # noqa: BLE001 - a job importing it itself reports the error
            print(f"wildmerge.warm: preloading {name} failed: {err!r}", file=sys.stderr)
    print(f"wildmerge.warm: preloaded {' '.join(done)} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def serve(path: str, stages: Sequence[Sequence[str]] = PRELOAD, jobs_log: str | None = None) -> None:
    """Listen on ``path``; preload ``stages`` between connections; fork a child per job.

    Each job's rule, wildcards, exit status and CPU/wall seconds in the child are appended
    to ``jobs_log`` (JSON lines), if given: Snakemake's benchmark files see only the job
    process waiting for the child.

    Jobs connecting while the first stage is imported wait for it (it is what they would
    import themselves). Stops when stdin reaches EOF (the Snakemake process closed it or
    exited).
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(256)
    os.chmod(path, 0o600)
    server_fp = fingerprint()  # the environment the libraries see at import
    before = dict(os.environ)
    _no_monitor_threads()
    pending = [list(s) for s in stages]
    if pending:
        _import_stage(pending.pop(0))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "job")
    sel.register(sys.stdin, selectors.EVENT_READ, "parent")
    children: set[int] = set()
    running = True
    while running or children:
        events = sel.select(0 if pending and running else 1.0) if running else []
        for key, _ in events:
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 4096):
                    running = False
                    sel.unregister(sys.stdin)
                    sel.unregister(listener)
                    listener.close()
                    os.unlink(path)
                continue
            conn, _ = listener.accept()
            fds: list[int] = []
            try:
                conn.settimeout(10)  # the job process sends its request as soon as it connects
                request = _recv(conn, fds)
                conn.settimeout(None)
            except (OSError, EOFError, ValueError):
                conn.close()
                for fd in fds:
                    os.close(fd)
                continue
            try:
                reason = _mismatch(request, server_fp)
                if reason is None and request.get("prepare"):
                    while pending:  # a job that prepares uses the libraries: all of them are imported first
                        _import_stage(pending.pop(0))
                    _prepare(request["prepare"])
                _warn_if_cuda_initialised()
                pid = os.fork()
            except Exception as err:  # noqa: BLE001 - the job process, refused, runs the job itself
                print(f"wildmerge.warm: could not take a job: {err!r}", file=sys.stderr, flush=True)
                pid = -1
            if pid == 0:
                sel.close()
                listener.close()
                # what the imports set in the environment, a fresh job process would set too
                changed = {k: v for k, v in os.environ.items() if before.get(k) != v}
                _child(conn, request, fds, reason, changed, jobs_log)  # never returns
            conn.close()
            for fd in fds:
                os.close(fd)
            if pid > 0:
                children.add(pid)
        if running and not events and pending:
            _import_stage(pending.pop(0))
        if not running:
            time.sleep(0.05)  # children left after the stop: reap them (their CPU time counts)
        while children:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)


def _no_monitor_threads() -> None:
    """No tqdm monitor thread in the server (the datasets a job prepares are read with a progress
    bar): a thread holding tqdm's lock when the server forks would hang the job's first bar."""
    try:
        import tqdm
    except ImportError:
        return
    tqdm.tqdm.monitor_interval = 0


def _mismatch(request: dict[str, Any], server_fp: dict[str, Any]) -> str | None:
    theirs = request.get("fingerprint") or {}
    if theirs.get("python") != server_fp["python"]:
        return "another Python"
    mine, env = server_fp["env"], theirs.get("env", {})
    differ = sorted(k for k in set(mine) | set(env) if mine.get(k) != env.get(k))
    return f"environment differs from the warm worker's in {', '.join(differ)}" if differ else None


def _warn_if_cuda_initialised() -> None:
    """A job forked after CUDA was initialised in the server cannot use CUDA: say so, loudly."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        print("wildmerge.warm: CUDA was initialised in the warm worker: its jobs cannot use the GPU "
              "(run with WILDMERGE_WARM=0, and report this)", file=sys.stderr, flush=True)


def _prepare(spec: Sequence[Any]) -> None:
    """A job's ``prepare`` call (run_warm), in the server: its jobs inherit what it loads."""
    started = time.perf_counter()
    try:
        target, args = spec
        module, _, function = str(target).partition(":")
        getattr(importlib.import_module(module), function)(*args)
    except Exception as err:  # noqa: BLE001 - the job does the work itself, and reports its errors
        print(f"wildmerge.warm: preparing {spec!r} failed: {err!r}", file=sys.stderr, flush=True)
        return
    print(f"wildmerge.warm: prepared {target} in {time.perf_counter() - started:.2f} s", file=sys.stderr, flush=True)


def _child(conn: socket.socket, request: dict[str, Any], fds: list[int], reason: str | None,
           changed: dict[str, str], jobs_log: str | None) -> None:
    """In the forked child: take over the job's process state (``request``, its file
    descriptors ``fds``), run its script, report; or refuse it (``reason``)."""
    code = 1
    try:
        os.setpgid(0, 0)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _send(conn, {"accepted": reason is None, "reason": reason})
        if reason is not None:
            os._exit(0)
        for fd, target in zip(fds, request["fds"]):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(changed)
        sys.argv = list(request["argv"])
        sys.path[:] = request["sys_path"]
        tempfile.tempdir = None  # TMPDIR is the job's
        _reseed()
        global _IN_WORKER
        _IN_WORKER = True
        done = threading.Event()
        threading.Thread(target=_watch_job_process, args=(conn, done), daemon=True).start()
        started = (time.process_time(), time.perf_counter())
        code, script_globals = _run_script(request["script"])
        cpu = time.process_time() - started[0]
        wall = time.perf_counter() - started[1]
        print(f"wildmerge.warm: ran in warm worker {os.getpid()}: {cpu:.2f} s CPU, {wall:.2f} s wall", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        if jobs_log:
            record = {**_job_record(script_globals), "exit": code, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}
            with open(jobs_log, "a") as f:  # one short line per job: appends do not interleave
                f.write(json.dumps(record) + "\n")
        done.set()
        _send(conn, {"exit": code, "cpu_s": round(cpu, 3)})
    except BaseException:  # noqa: BLE001 - the job process must learn of any failure here
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code or 1)
    os._exit(code)


def _run_script(path: str) -> tuple[int, dict[str, Any]]:
    """Run ``path`` as ``__main__`` the way ``python path`` would: (exit status, its globals)."""
    import atexit
    import builtins
    import types

    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    code = 0
    try:
        exec(compile(Path(path).read_bytes(), path, "exec"), main.__dict__)  # noqa: S102 - the job's own script
    except SystemExit as err:
        if err.code is None:
            code = 0
        elif isinstance(err.code, int):
            code = err.code
        else:
            print(err.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        kind, err, tb = sys.exc_info()
        sys.excepthook(kind, err, tb.tb_next if tb is not None else None)  # from the script's frame
        code = 1
    try:
        atexit._run_exitfuncs()
    except Exception:  # noqa: BLE001, S110 - ignored at interpreter exit too
        pass
    return code, main.__dict__


def _job_record(script_globals: dict[str, Any]) -> dict[str, Any]:
    """Rule and wildcards of a Snakemake script job (its ``snakemake`` object), if any."""
    smk = script_globals.get("snakemake")
    try:
        return {"rule": smk.rule, "wildcards": dict(smk.wildcards.items())}
    except AttributeError:
        return {}


def _watch_job_process(conn: socket.socket, done: threading.Event) -> None:
    """The job process closing the connection before the end means it was killed: so is this."""
    try:
        conn.recv(1)
    except OSError:
        pass
    if not done.is_set():
        os.killpg(os.getpgid(0), signal.SIGKILL)


def _reseed() -> None:
    """Unseeded randomness as in a fresh process, not a copy of the server's."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


# --- started and stopped by the Snakefile ------------------------------------------------


def start(log: str | Path | None = None, jobs_log: str | Path | None = None,
          stages: Sequence[Sequence[str]] = PRELOAD) -> subprocess.Popen | None:
    """Start a server for this run (its socket path exported for the jobs); None if disabled.

    ``log``: the server's output; ``jobs_log``: one JSON line per job run in it (see serve);
    ``stages``: the modules it imports.
    """
    if not enabled():
        return None
    directory = tempfile.mkdtemp(prefix="wildmerge-warm-")
    if jobs_log:  # this run's jobs only
        jobs_log = os.path.abspath(jobs_log)
        Path(jobs_log).write_text("")
    path = os.path.join(directory, "socket")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the server keeps it
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, json; from wildmerge.warm import serve; serve(*json.loads(sys.argv[1]))",
         json.dumps([path, [list(s) for s in stages], jobs_log])],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=out,
        env=env,
    )
    proc.socket_dir = directory  # type: ignore[attr-defined]
    # a job that finds no socket runs on its own: wait for it (~0.1 s: Python starting)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.environ[SOCKET_ENV] = path
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    """Stop the server (after the run: no job is left) and wait for it."""
    os.environ.pop(SOCKET_ENV, None)
    if proc is None:
        return
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    directory = getattr(proc, "socket_dir", None)
    if directory:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
