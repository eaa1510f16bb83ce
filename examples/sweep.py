"""Train a small NumPy MLP on the digits data over a learning rate x batch size grid.

Every grid point is one assay run. All runs train at the same time in separate
processes, so their metrics stream to the server together. The data is scikit-learn's
bundled ``load_digits`` set (1,797 8x8 images), so nothing is downloaded.

The network is plain on purpose: leaky ReLU hidden layers, a softmax cross-entropy
computed without the usual max subtraction, minibatch SGD at a constant learning rate,
and no gradient clipping. With the default grid, the runs at lr=0.5 and lr=1.0 with
batch sizes 8 and 16 diverge: the logits grow until ``exp`` overflows float64, the
training loss becomes +inf and then NaN, and the run keeps training and logging those
values until its last epoch. The other eight runs end above 95% validation accuracy.

NOTE: Divergence is chaotic. The step where a run diverges, and for lr=0.5 at batch
size 16 whether it diverges at all, changes with ``--seed`` and can change with the
NumPy and BLAS build. With seeds 0, 1 and 2 (NumPy 2.4, OpenBLAS), lr=1.0 at batch sizes
8 and 16 and lr=0.5 at batch size 8 always diverged.

Run it with the server address and API key in the environment::

    ASSAY_SERVER=http://127.0.0.1:8080 ASSAY_API_KEY=... python examples/sweep.py

or pass ``--server`` and ``--api-key``, or run ``make demo``. ``--help`` lists the
options. The script needs NumPy and scikit-learn, which
``pip install -e '.[examples]'`` in the repository root installs with the SDK.

``train(config, log)`` does not use the SDK, so it runs with any callable that accepts
``(metrics, step)``, for example in a test.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits  # type: ignore[import-untyped]
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

# threadpoolctl is a dependency of scikit-learn.
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Layer = tuple[FloatArray, FloatArray]  # (weights, bias)
MetricValue = float | int | bool | None
LogFn = Callable[[dict[str, MetricValue], int], None]

GROUP = "digits-mlp"
DEFAULT_PROJECT = "demo-sweep"
DEFAULT_LEARNING_RATES = (0.01, 0.1, 0.5, 1.0)
DEFAULT_BATCH_SIZES = (8, 16, 64)
DEFAULT_HIDDEN_SIZES = (128, 64)
DEFAULT_EPOCHS = 100
DEFAULT_STEPS_PER_LOG = 10
DEFAULT_SEED = 1

#: Seed of the train/validation split. It is fixed so that every run is scored on the
#: same validation images, whatever its own seed.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2

#: Slope of the leaky ReLU for negative inputs. With a plain ReLU, high learning rates
#: tend to kill every unit (the loss then sticks at log(10)) instead of overflowing.
LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class RunConfig:
    """Hyperparameters of one training run."""

    lr: float
    batch_size: int
    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    epochs: int = DEFAULT_EPOCHS
    seed: int = DEFAULT_SEED
    steps_per_log: int = DEFAULT_STEPS_PER_LOG

    @property
    def name(self) -> str:
        return f"lr={float(self.lr)},bs={self.batch_size}"

    def to_dict(self) -> dict[str, object]:
        return {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "hidden_sizes": list(self.hidden_sizes),
            "epochs": self.epochs,
            "seed": self.seed,
            "steps_per_log": self.steps_per_log,
            "activation": f"leaky_relu({LEAKY_SLOPE})",
            "optimizer": "sgd",
            "dataset": "sklearn.datasets.load_digits",
            "validation_fraction": VALIDATION_FRACTION,
        }


@dataclass(frozen=True)
class RunResult:
    """Outcome of one training run, as the main process prints it."""

    name: str
    final_train_loss: float
    final_val_acc: float
    first_inf_step: int | None
    first_nan_step: int | None
    steps: int
    seconds: float

    @property
    def diverged(self) -> bool:
        return self.first_inf_step is not None or self.first_nan_step is not None


@dataclass(frozen=True)
class Dataset:
    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray


@dataclass
class TrainingWindow:
    """Minibatch losses and accuracies since the last log call, and where divergence began.

    ``first_inf_step`` and ``first_nan_step`` are the first SGD steps whose minibatch loss
    was +-inf or NaN.
    """

    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    first_inf_step: int | None = None
    first_nan_step: int | None = None

    def add(self, step: int, loss: float, acc: float) -> bool:
        """Record one step and return whether it is the first inf or the first NaN step."""
        self.losses.append(loss)
        self.accuracies.append(acc)
        if self.first_inf_step is None and math.isinf(loss):
            self.first_inf_step = step
            return True
        if self.first_nan_step is None and math.isnan(loss):
            self.first_nan_step = step
            return True
        return False

    def pop_means(self) -> dict[str, MetricValue]:
        """Return the mean loss and accuracy of the window and start a new window.

        A single inf or NaN loss makes the mean inf or NaN, so divergence is never
        averaged away.
        """
        means: dict[str, MetricValue] = {
            "train/loss": float(np.mean(self.losses)),
            "train/acc": float(np.mean(self.accuracies)),
        }
        self.losses.clear()
        self.accuracies.clear()
        return means


def load_dataset() -> Dataset:
    """Load the bundled digits images, split them, and standardize each pixel.

    The scaler is fit on the training split only.
    """
    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=VALIDATION_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    return Dataset(scaler.transform(x_train), y_train, scaler.transform(x_val), y_val)


def init_layers(sizes: Sequence[int], rng: np.random.Generator) -> list[Layer]:
    """Create He-initialized weights and zero biases for consecutive layer sizes."""
    layers: list[Layer] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        weights = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        layers.append((weights, np.zeros(fan_out)))
    return layers


def forward(layers: Sequence[Layer], x: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Run the network on ``x`` and return the input of every layer and the logits."""
    inputs: list[FloatArray] = []
    activation = x
    for index, (weights, bias) in enumerate(layers):
        inputs.append(activation)
        activation = activation @ weights + bias
        if index < len(layers) - 1:
            activation = np.where(activation > 0.0, activation, LEAKY_SLOPE * activation)
    return inputs, activation


def softmax_cross_entropy(logits: FloatArray, labels: IntArray) -> tuple[float, FloatArray]:
    """Compute the mean cross-entropy loss and the softmax probabilities.

    Both skip the max subtraction that stable implementations use, on purpose. Once a
    logit passes about 709.78, ``exp`` overflows to inf, so log(sum(exp)) and the loss
    become +inf and the probabilities inf / inf = NaN. The NaN gradient then turns every
    weight into NaN, and from the next step on the loss is NaN.
    """
    exp = np.exp(logits)
    sum_exp = exp.sum(axis=1)
    losses = np.log(sum_exp) - logits[np.arange(len(labels)), labels]
    return float(np.mean(losses)), exp / sum_exp[:, np.newaxis]


def accuracy(logits: FloatArray, labels: IntArray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def sgd_step(
    layers: list[Layer],
    inputs: Sequence[FloatArray],
    probs: FloatArray,
    labels: IntArray,
    lr: float,
) -> None:
    """Backpropagate the mean cross-entropy gradient and update ``layers`` in place."""
    grad = probs.copy()
    grad[np.arange(len(labels)), labels] -= 1.0
    grad /= len(labels)
    for index in reversed(range(len(layers))):
        weights, bias = layers[index]
        layer_input = inputs[index]
        grad_weights = layer_input.T @ grad
        grad_bias = grad.sum(axis=0)
        if index > 0:
            # The input of every layer after the first is a leaky ReLU output, which is
            # positive exactly where the pre-activation is, so it selects the slope.
            slope = np.where(layer_input > 0.0, 1.0, LEAKY_SLOPE)
            grad = (grad @ weights.T) * slope
        layers[index] = (weights - lr * grad_weights, bias - lr * grad_bias)


def evaluate(layers: Sequence[Layer], x: FloatArray, y: IntArray) -> tuple[float, float]:
    """Compute the mean cross-entropy loss and the accuracy of the model on ``x``."""
    _, logits = forward(layers, x)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, accuracy(logits, y)


def train(config: RunConfig, log: LogFn) -> RunResult:
    """Train one MLP with minibatch SGD and report metrics through ``log(metrics, step)``.

    ``step`` counts SGD updates, starting at 1. ``log`` is called every
    ``config.steps_per_log`` steps, at the end of every epoch, and at the first step
    whose loss is inf and the first whose loss is NaN, so that the logged curve shows
    exactly where divergence began. Each call carries ``train/loss`` and ``train/acc``
    (means over the minibatches since the previous call), ``lr`` and ``epoch``. The
    end-of-epoch call also carries ``val/loss`` and ``val/acc``. Non-finite values are
    passed on unchanged, and a diverged run keeps training until its last epoch.
    """
    started = time.perf_counter()
    data = load_dataset()
    rng = np.random.default_rng(config.seed)
    n_classes = int(data.y_train.max()) + 1
    layers = init_layers([data.x_train.shape[1], *config.hidden_sizes, n_classes], rng)
    n_train = len(data.y_train)

    step = 0
    window = TrainingWindow()
    epoch_losses: list[float] = []
    val_acc = math.nan

    # Overflow to inf and the NaN that follows are the point of the high-lr runs, so
    # NumPy's warnings about them are silenced. The arithmetic itself is unchanged.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(n_train)
            epoch_losses.clear()
            for start in range(0, n_train, config.batch_size):
                batch = order[start : start + config.batch_size]
                labels = data.y_train[batch]
                inputs, logits = forward(layers, data.x_train[batch])
                loss, probs = softmax_cross_entropy(logits, labels)
                sgd_step(layers, inputs, probs, labels, config.lr)
                step += 1
                epoch_losses.append(loss)

                divergence_began = window.add(step, loss, accuracy(logits, labels))
                end_of_epoch = start + config.batch_size >= n_train
                if step % config.steps_per_log != 0 and not (end_of_epoch or divergence_began):
                    continue

                metrics = window.pop_means()
                metrics["lr"] = config.lr
                metrics["epoch"] = epoch
                if end_of_epoch:
                    val_loss, val_acc = evaluate(layers, data.x_val, data.y_val)
                    metrics["val/loss"] = val_loss
                    metrics["val/acc"] = val_acc
                log(metrics, step)

    return RunResult(
        name=config.name,
        final_train_loss=float(np.mean(epoch_losses)),
        final_val_acc=val_acc,
        first_inf_step=window.first_inf_step,
        first_nan_step=window.first_nan_step,
        steps=step,
        seconds=time.perf_counter() - started,
    )


def limit_blas_threads() -> None:
    """Limit each worker's BLAS to one thread, because the runs already fill the CPUs.

    Without this limit, 12 workers with 2 OpenBLAS threads each took the default sweep
    from 7 s to 43 s on a 2-core VM.
    """
    threadpool_limits(limits=1)


def run_tracked(
    config: RunConfig, project: str, server: str | None, api_key: str | None
) -> RunResult:
    """Train one configuration inside an assay run. Each worker process runs this."""
    # Imported here so that train() and the rest of this module work without the SDK.
    import assay

    with assay.init(
        project,
        name=config.name,
        config=config.to_dict(),
        tags=["example", "numpy"],
        group=GROUP,
        server=server,
        api_key=api_key,
    ) as run:
        return train(config, lambda metrics, step: run.log(metrics, step=step))


def format_result(result: RunResult) -> str:
    if result.diverged:
        outcome = (
            f"diverged: first inf loss at step {result.first_inf_step}, "
            f"first NaN loss at step {result.first_nan_step}"
        )
    else:
        outcome = "did not diverge"
    return (
        f"{result.name:<14} final train loss {result.final_train_loss:<10.4g} "
        f"val acc {result.final_val_acc:.3f}  {result.steps:>5} steps in "
        f"{result.seconds:4.1f} s  {outcome}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run a learning rate x batch size sweep of a NumPy MLP on the digits "
        "data and log every run to an assay server.",
    )
    parser.add_argument(
        "--project", default=DEFAULT_PROJECT, help="assay project (default: %(default)s)"
    )
    parser.add_argument("--server", help="assay server URL (default: $ASSAY_SERVER)")
    parser.add_argument("--api-key", help="assay API key (default: $ASSAY_API_KEY)")
    parser.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=list(DEFAULT_LEARNING_RATES),
        metavar="LR",
        help="SGD learning rates of the grid (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_BATCH_SIZES),
        metavar="N",
        help="minibatch sizes of the grid (default: %(default)s)",
    )
    parser.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_HIDDEN_SIZES),
        metavar="N",
        help="widths of the hidden layers (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="passes over the training split per run (default: %(default)s)",
    )
    parser.add_argument(
        "--steps-per-log",
        type=int,
        default=DEFAULT_STEPS_PER_LOG,
        metavar="N",
        help="SGD steps between logged training points, plus one point at every epoch end "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of weight initialization and shuffling, the same for every run "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: one per run, so that all runs stream at once)",
    )
    args = parser.parse_args(argv)

    must_be_positive = {
        "--lrs": args.lrs,
        "--batch-sizes": args.batch_sizes,
        "--hidden-sizes": args.hidden_sizes,
        "--epochs": [args.epochs],
        "--steps-per-log": [args.steps_per_log],
        "--workers": [] if args.workers is None else [args.workers],
    }
    for option, values in must_be_positive.items():
        for value in values:
            if not value > 0:
                parser.error(f"{option} must be positive, got {value}")
    return args


def build_grid(args: argparse.Namespace) -> list[RunConfig]:
    return [
        RunConfig(
            lr=lr,
            batch_size=batch_size,
            hidden_sizes=tuple(args.hidden_sizes),
            epochs=args.epochs,
            seed=args.seed,
            steps_per_log=args.steps_per_log,
        )
        for lr in args.lrs
        for batch_size in args.batch_sizes
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep, print one line per finished run, and return the exit status."""
    args = parse_args(argv)
    configs = build_grid(args)
    workers = args.workers or len(configs)
    print(f"Starting {len(configs)} runs in {workers} processes, project {args.project!r}")

    started = time.perf_counter()
    failures = 0
    with ProcessPoolExecutor(max_workers=workers, initializer=limit_blas_threads) as pool:
        futures: dict[Future[RunResult], RunConfig] = {
            pool.submit(run_tracked, config, args.project, args.server, args.api_key): config
            for config in configs
        }
        for future in as_completed(futures):
            config = futures[future]
            try:
                result = future.result()
            except Exception as error:
                # One failed run (for example a rejected API key) is reported, and the
                # others go on.
                failures += 1
                print(
                    f"{config.name:<14} failed: {type(error).__name__}: {error}", file=sys.stderr
                )
                continue
            print(format_result(result), flush=True)

    elapsed = time.perf_counter() - started
    print(f"Finished {len(configs) - failures} of {len(configs)} runs in {elapsed:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
