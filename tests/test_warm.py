"""The warm worker (wildmerge/warm.py): a job handed to it behaves like a job run on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from wildmerge import warm  # noqa: E402

JOB = textwrap.dedent(
    """
    import json, os, sys, time
    from wildmerge.warm import run_warm

    run_warm(prepare=json.loads(os.environ["PREPARE"]) if os.environ.get("PREPARE") else None)
    import wildmerge.warm as w

    if os.environ.get("SLEEP"):
        open(os.environ["SLEEP"], "w").write(str(os.getpid()))
        time.sleep(60)
    print(json.dumps({"pid": os.getpid(), "in_worker": w._IN_WORKER, "cwd": os.getcwd(), "argv": sys.argv[1:],
                      "var": os.environ.get("JOB_VAR"), "tmp": __import__("tempfile").gettempdir(),
                      "preloaded": "json_preloaded_marker" in sys.modules,
                      "prepared": getattr(sys.modules.get("json_preloaded_marker"), "PREPARED", None)}))
    print("to stderr", file=sys.stderr)
    if os.environ.get("FAIL"):
        raise ValueError("job failed")
    sys.exit(int(os.environ.get("CODE", "0")))
    """
)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A warm server preloading only a marker module (fast), its socket exported."""
    (tmp_path / "json_preloaded_marker.py").write_text(
        "import os\nPREPARED = []\n\n\ndef prepare(what):\n    if what == 'fail':\n"
        "        raise RuntimeError('cannot prepare')\n    PREPARED.append([what, os.getpid()])\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(tmp_path)]))
    monkeypatch.delenv(warm.SOCKET_ENV, raising=False)
    monkeypatch.delenv(warm.ENABLE_ENV, raising=False)
    proc = warm.start(log=tmp_path / "server.log", jobs_log=tmp_path / "jobs.jsonl",
                      stages=[["json_preloaded_marker"]])
    assert proc is not None and os.environ.get(warm.SOCKET_ENV)
    yield proc
    warm.stop(proc)
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()


def run_job(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(script), "a", "b"], check=False, cwd=work, capture_output=True, text=True,
                          env={**os.environ, "JOB_VAR": "job", "TMPDIR": str(tmp_path), **env}, timeout=120)


def test_job_runs_in_the_worker_with_its_own_state(server, tmp_path):
    proc = run_job(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["in_worker"] and out["preloaded"]  # forked from the server: imports done
    assert out["pid"] != os.getpid() and out["cwd"] == str(tmp_path / "work")
    assert out["argv"] == ["a", "b"] and out["var"] == "job" and out["tmp"] == str(tmp_path)
    assert "to stderr" in proc.stderr
    record = json.loads((tmp_path / "jobs.jsonl").read_text().splitlines()[-1])
    assert record["exit"] == 0 and record["cpu_s"] >= 0


def test_what_the_server_prepares_for_a_job_is_inherited_by_it_and_later_jobs(server, tmp_path):
    """run_warm(prepare=...): called in the server before the fork (evaluation jobs: their
    datasets, wildmerge.evaluation.start.warm_prepare); a failure is logged, the job still runs."""
    first = run_job(tmp_path, PREPARE=json.dumps(["json_preloaded_marker:prepare", ["data-a"]]))
    second = run_job(tmp_path, PREPARE=json.dumps(["json_preloaded_marker:prepare", ["data-b"]]))
    failed = run_job(tmp_path, PREPARE=json.dumps(["json_preloaded_marker:prepare", ["fail"]]))
    assert first.returncode == second.returncode == failed.returncode == 0, failed.stderr
    server_pid = server.pid
    assert json.loads(first.stdout)["prepared"] == [["data-a", server_pid]]
    assert json.loads(second.stdout)["prepared"] == [["data-a", server_pid], ["data-b", server_pid]]
    assert json.loads(failed.stdout)["in_worker"]
    # a job whose environment differs runs on its own: nothing is prepared for it in the server
    apart = run_job(tmp_path, HF_HOME=str(tmp_path / "elsewhere"),
                    PREPARE=json.dumps(["json_preloaded_marker:prepare", ["data-c"]]))
    assert apart.returncode == 0 and not json.loads(apart.stdout)["in_worker"]
    later = run_job(tmp_path, PREPARE=json.dumps(["json_preloaded_marker:prepare", ["data-d"]]))
    assert [what for what, _ in json.loads(later.stdout)["prepared"]] == ["data-a", "data-b", "data-d"]
    warm.stop(server)
    log = (tmp_path / "server.log").read_text()
    assert "prepared json_preloaded_marker:prepare" in log and "RuntimeError('cannot prepare')" in log


def test_a_client_sending_nothing_or_garbage_does_not_stop_the_server(server, tmp_path):
    import socket

    for payload in (b"", b"\x00\x00\x00\x05[1,2", b"\x00\x00\x00\x02[]"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(os.environ[warm.SOCKET_ENV])
            sock.sendall(payload)
    proc = run_job(tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["in_worker"], proc.stderr
    assert server.poll() is None


def test_exit_status_and_traceback_are_the_jobs(server, tmp_path):
    assert run_job(tmp_path, CODE="3").returncode == 3
    failed = run_job(tmp_path, FAIL="1")
    assert failed.returncode == 1
    assert "ValueError: job failed" in failed.stderr and "job.py" in failed.stderr


def test_different_import_environment_runs_on_its_own(server, tmp_path):
    proc = run_job(tmp_path, HF_HOME=str(tmp_path / "elsewhere"))
    assert proc.returncode == 0
    assert not json.loads(proc.stdout)["in_worker"]
    assert "environment differs from the warm worker's in HF_HOME" in proc.stderr


def test_without_a_server_the_job_runs_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv(warm.SOCKET_ENV, str(tmp_path / "no-such-socket"))
    proc = run_job(tmp_path)
    assert proc.returncode == 0 and not json.loads(proc.stdout)["in_worker"]
    monkeypatch.setenv(warm.ENABLE_ENV, "0")
    assert warm.start() is None


def test_killing_the_job_process_kills_its_worker(server, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    pid_file = tmp_path / "worker.pid"
    job = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "SLEEP": str(pid_file)})
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 30
    while _alive(worker):
        assert time.monotonic() < deadline, "worker outlived its job process"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by the server is dead too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
