"""Choosing the ``tf.distribute`` strategy a run trains under: one device, all local GPUs,
or a cluster of workers described by ``TF_CONFIG``.

The strategy must exist before TensorFlow runs its first operation (collective ops are
configured at start-up), so commands enter :func:`distributed` first of all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import tensorflow as tf

from seqkit.errors import SeqkitError

STRATEGIES = ("auto", "mirrored", "multi-worker")


def read_tf_config() -> dict:
    """``TF_CONFIG`` as a dict, checked enough that a typo gets a sentence, not a hang."""
    raw = os.environ.get("TF_CONFIG", "")
    where = "--strategy multi-worker reads the cluster from TF_CONFIG"
    if not raw.strip():
        raise SeqkitError(f"{where}, which is not set: see README, 'Training on several machines'.")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        members = {kind: list(hosts) for kind, hosts in cluster.items()}
        kind, index = task["type"], task["index"]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise SeqkitError(
            f"{where}, which is malformed ({type(err).__name__}: {err}); it should look like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None
    if not members.get("worker") or any(not isinstance(h, str) or ":" not in h for hs in members.values() for h in hs):
        raise SeqkitError(f'{where}: its cluster needs a "worker" list of "host:port" addresses.')
    if kind not in members or not isinstance(index, int) or not 0 <= index < len(members[kind]):
        raise SeqkitError(f"{where}: its task {kind!r} {index!r} is not one of the cluster's members.")
    return config


def make_strategy(name: str = "auto", timeout: float = 300.0) -> tf.distribute.Strategy:
    """The strategy called ``name``.

    Args:
        name: ``auto`` (all local GPUs when there are several, else the default one-device
            strategy), ``mirrored`` (``MirroredStrategy`` over the local devices) or
            ``multi-worker`` (``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster).
        timeout: seconds a cross-worker operation may wait for the other workers before
            the run stops with an error (multi-worker only).
    """
    if name == "multi-worker":
        config = read_tf_config()
        _wait_for_cluster_at_most(timeout)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        try:
            with _watchdog(config, timeout):
                return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as err:
            if "Timeout waiting for the cluster" not in str(err):
                raise
            raise SeqkitError(_unreachable(timeout, "the cluster did not assemble")) from None
    if name == "mirrored" or (name == "auto" and len(tf.config.list_physical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    if name == "auto":
        return tf.distribute.get_strategy()
    raise SeqkitError(f"Unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}.")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans more than one process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return sum(len(hosts) for hosts in strategy.cluster_resolver.cluster_spec().as_dict().values()) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: always, except on the workers of a
    cluster other than its chief (the "chief" task, else worker 0)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_id == 0)


_WATCHDOG = """
import os, signal, socket, sys, time
parent, timeout, message, peers = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
deadline = time.monotonic() + timeout
while peers and time.monotonic() < deadline:
    host, _, port = peers[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        peers.pop(0)
    except (OSError, ValueError):
        time.sleep(0.2)
if peers:
    sys.stderr.write(message.replace("PEER", peers[0]) + "\\n")
    os.kill(parent, signal.SIGKILL)
"""


@contextmanager
def _watchdog(config: dict, timeout: float) -> Iterator[None]:
    """TensorFlow's start-up connects to every worker and waits, holding the interpreter,
    forever for one that never comes. A small watchdog process knocks on the other
    workers' ports meanwhile; if one stays closed past ``timeout`` it prints one line and
    kills this process (nothing has been written yet). Leaving the block stops it."""
    task = config["task"]
    me = config["cluster"][task["type"]][task["index"]]
    peers = [h for hosts in config["cluster"].values() for h in hosts if h != me]
    message = f"seqkit: error: {_unreachable(timeout, 'PEER did not answer')}"
    try:  # the terminal, where there is one (not in a notebook)
        sys.stderr.fileno()
        terminal = sys.stderr
    except (AttributeError, ValueError, OSError):
        terminal = None
    dog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), message, *peers], stderr=terminal
    )
    try:
        yield
    finally:
        dog.kill()
        dog.wait()


def _wait_for_cluster_at_most(timeout: float) -> None:
    """The strategy's constructor waits for every worker with TensorFlow's barrier, which
    by default waits forever; bound it (a class setting TensorFlow's own tests use)."""
    try:
        from tensorflow.python.distribute.collective_all_reduce_strategy import CollectiveAllReduceExtended
    except ImportError:  # a TensorFlow without it: the barrier simply keeps waiting
        return
    CollectiveAllReduceExtended._check_health_initial_timeout = max(1, int(timeout))


def _unreachable(timeout: float, what: str) -> str:
    return (
        f"Another worker could not be reached within {timeout:g} s ({what}): start the same "
        "command on every worker of TF_CONFIG, check the addresses, or raise --worker-timeout."
    )


@contextmanager
def distributed(name: str = "auto", timeout: float = 300.0) -> Iterator[tf.distribute.Strategy]:
    """The strategy of :func:`make_strategy`, for a run inside the block; a cluster that
    stops answering during the run becomes one sentence."""
    strategy = make_strategy(name, timeout)
    try:
        yield strategy
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as err:
        raise SeqkitError(_unreachable(timeout, type(err).__name__)) from None
