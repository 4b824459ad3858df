"""`cvlabel infer --backend dask`: the same rows and probabilities as the local backend, and a
killed worker loses nothing. The clusters here are LocalClusters on 127.0.0.1."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cvlabel import runners
from cvlabel.artifacts import PredictionsFolder
from cvlabel.cli import app
from cvlabel.config import InferOptions
from cvlabel.errors import CvlabelError
from cvlabel.inference import infer
from cvlabel.testing import infer_command

distributed = pytest.importorskip("distributed")

runner = CliRunner()
SHARD = 2  # rows per shard: many shards from the small synthetic corpus


@pytest.fixture(scope="module")
def local_predictions(synthetic_corpus, trained_run, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("local") / "pred"
    infer(synthetic_corpus, trained_run, out, InferOptions(jobs=1, shard_size=SHARD))
    return pd.read_parquet(PredictionsFolder(out).predictions)


def assert_same_predictions(out, expected: pd.DataFrame) -> None:
    got = pd.read_parquet(PredictionsFolder(out).predictions)
    assert got["path"].tolist() == expected["path"].tolist()
    for column in ("logit", "p_female", "clip_p_female", "speaker_p_female"):
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), atol=1e-6, rtol=0)
    assert got["label"].tolist() == expected["label"].tolist()


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_rows_and_probabilities(
    synthetic_corpus, trained_run, tmp_path, local_predictions
):
    out = tmp_path / "pred"
    result = runner.invoke(
        app,
        infer_command(
            synthetic_corpus, trained_run, out, "--backend", "dask", "--jobs", "2", "--shard-size", str(SHARD)
        ),
    )
    assert result.exit_code == 0, result.output
    assert_same_predictions(out, local_predictions)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(synthetic_corpus, trained_run, tmp_path, local_predictions):
    out = tmp_path / "pred"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        client.wait_for_workers(2)
        pids = client.run(os.getpid)  # worker address -> process id
        killed: dict[str, int] = {}

        def kill_a_busy_worker():
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                busy = [address for address, tasks in client.processing().items() if tasks]
                if busy:  # its first task is still importing torch: the kill lands mid-shard
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed["address"] = busy[0]
                time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        infer(
            synthetic_corpus,
            trained_run,
            out,
            InferOptions(shard_size=SHARD, backend="dask", scheduler=local.scheduler_address),
        )
        killer.join()
    assert killed, "no worker was ever busy"
    shards = -(-len(local_predictions) // SHARD)
    assert all(PredictionsFolder(out).part(k).exists() for k in range(shards))
    assert not list(out.glob("*.tmp*"))
    assert_same_predictions(out, local_predictions)


def test_missing_dask_is_a_clear_error(synthetic_corpus, trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(CvlabelError, match=r"pip install 'cvlabel\[dask\]'"):
        infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(backend="dask"))


def test_unreachable_scheduler_and_misused_options_are_clear_errors(
    synthetic_corpus, trained_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(runners, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(CvlabelError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        infer(
            synthetic_corpus, trained_run, tmp_path / "a", InferOptions(backend="dask", scheduler="tcp://127.0.0.1:9")
        )  # port 9: nothing listens
    result = runner.invoke(
        app,
        infer_command(synthetic_corpus, trained_run, tmp_path / "b", "--scheduler", "tcp://127.0.0.1:9"),
    )
    assert result.exit_code == 1 and "--scheduler is an address for --backend dask" in result.output
    result = runner.invoke(
        app,
        infer_command(synthetic_corpus, trained_run, tmp_path / "c", "--backend", "ray"),
    )
    assert result.exit_code == 1 and "unknown backend 'ray'" in result.output


def fails_on_two(shard: int, worker: bool) -> int:
    if shard == 2:
        raise OSError("no space left on device")
    return shard


def test_a_shard_that_keeps_failing_is_one_clear_error_after_its_retries():
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,  # in-process: no network
        dashboard_address=None,
    ) as local:
        done: list[object] = []
        with (
            runners.dask_runner(local.scheduler_address, 1) as run,
            pytest.raises(CvlabelError, match=r"after 3 tries \(OSError: no space left on device\)"),
        ):
            run.map(fails_on_two, [(1,), (2,), (3,)], done.append)
    assert 2 not in done
