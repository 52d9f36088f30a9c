"""Run the `seqkit` command instrumented, for the kill-and-resume and multi-worker tests.

    python seqkit_instrumented.py [--step-delay SECONDS] [--interrupt-after N]
                                  [--die-in-save N] [--dump-weights FILE.npz] -- SEQKIT ARGS...

--step-delay slows every training step so that a test can send a signal mid-training;
--interrupt-after sends the process a real SIGINT (Ctrl-C) as its Nth training step returns,
so that where it lands does not depend on how busy the machine is;
--die-in-save makes the process SIGKILL itself half-way through writing its Nth periodic
checkpoint: the checkpoint's files are on disk, one of them truncated, and the folder's
``checkpoint`` index has not been updated yet; --dump-weights saves the weights this
process holds when training ends (every worker of a cluster holds its own copy).
"""

import os
import signal
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    options, seqkit_args = dict(zip(args[:split:2], args[1:split:2])), args[split + 1 :]

    import tensorflow as tf

    from seqkit.core.trainer import Trainer

    delay = float(options.get("--step-delay", 0))
    interrupt_after = int(options.get("--interrupt-after", 0))
    die_in_save = int(options.get("--die-in-save", 0))
    dump = options.get("--dump-weights")
    if interrupt_after:  # a shell that starts a job in the background starts it ignoring SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
    original_init, original_fit, saves = Trainer.__init__, Trainer.fit, []

    def init(self, *a, **k):
        original_init(self, *a, **k)
        train_step, steps = self._train_step, []

        def slow_step(*args):
            time.sleep(delay)
            result = train_step(*args)
            steps.append(None)
            if len(steps) == interrupt_after:
                os.kill(os.getpid(), signal.SIGINT)
            return result

        self._train_step = slow_step

    def save(self, checkpoint_number=None, **_):
        if os.path.basename(self.directory) == "checkpoints":
            saves.append(checkpoint_number)
            if len(saves) == die_in_save:
                prefix = self.checkpoint.write(f"{self._prefix}-{checkpoint_number}")
                data = tf.io.gfile.glob(prefix + ".data-*")[0]
                os.truncate(data, os.path.getsize(data) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return original_save(self, checkpoint_number=checkpoint_number)

    def fit(self, *a, **k):
        history = original_fit(self, *a, **k)
        if dump:
            import numpy as np

            np.savez(dump, *self.model.get_weights())
        return history

    Trainer.__init__, Trainer.fit = init, fit
    original_save = tf.train.CheckpointManager.save
    tf.train.CheckpointManager.save = save

    from seqkit.cli import main as seqkit

    sys.argv[0] = "seqkit"
    seqkit(seqkit_args)


if __name__ == "__main__":
    main()
