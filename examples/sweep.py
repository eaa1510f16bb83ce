"""Train a small NumPy MLP on the digits data over a learning rate x batch size grid.

Every grid point is one assay run, and all runs train at the same time in separate
processes, so their metrics stream to the server together. The data is scikit-learn's
bundled ``load_digits`` set (1,797 8x8 images), so nothing is downloaded.

The network is plain on purpose: leaky ReLU hidden layers, a softmax computed without the
usual max subtraction, minibatch SGD at a constant learning rate, and no gradient
clipping. With the default grid the high learning rates at small batch sizes diverge:
the logits grow until float64 overflows, the training loss becomes +inf and then NaN,
and the script keeps training and logging those values until the epoch budget ends.

Run it with a server address and API key in the environment::

    ASSAY_SERVER=http://127.0.0.1:8000 ASSAY_API_KEY=... python examples/sweep.py

or pass ``--server`` and ``--api-key``, or run ``make demo``. ``--help`` lists the
options. The script needs NumPy and scikit-learn (``pip install 'assay[examples]'``).

``train(config, log)`` does not use the SDK, so it can be run with any callable that
takes ``(metrics, step)``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MetricValue = float | int | bool | None
LogFn = Callable[[Mapping[str, MetricValue], int], None]

GROUP = "digits-mlp"
DEFAULT_PROJECT = "demo-sweep"
DEFAULT_LEARNING_RATES = (0.01, 0.1, 1.0, 5.0)
DEFAULT_BATCH_SIZES = (8, 32, 128)
DEFAULT_HIDDEN_SIZES = (64, 32)
DEFAULT_EPOCHS = 20
DEFAULT_STEPS_PER_LOG = 5
DEFAULT_SEED = 0

#: Seed of the train/validation split. It is fixed so that every run is scored on the
#: same validation images, whatever its own seed.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2

#: Slope of the leaky ReLU for negative inputs. A plain ReLU tends to die at high learning
#: rates (every unit outputs 0 and the loss sticks at log(10)) instead of overflowing.
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
        return f"lr={self.lr:g},bs={self.batch_size}"

    def to_dict(self) -> dict[str, object]:
        return {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "hidden_sizes": list(self.hidden_sizes),
            "epochs": self.epochs,
            "seed": self.seed,
            "steps_per_log": self.steps_per_log,
            "optimizer": "sgd",
            "dataset": "sklearn.datasets.load_digits",
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


Layer = tuple[FloatArray, FloatArray]


def init_layers(sizes: Sequence[int], rng: np.random.Generator) -> list[Layer]:
    """Create He-initialized weights and zero biases for consecutive layer sizes."""
    layers: list[Layer] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        weights = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        layers.append((weights, np.zeros(fan_out)))
    return layers


def forward(layers: Sequence[Layer], x: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Return the input of every layer and the output logits."""
    inputs: list[FloatArray] = []
    activation = x
    for index, (weights, bias) in enumerate(layers):
        inputs.append(activation)
        activation = activation @ weights + bias
        if index < len(layers) - 1:
            activation = np.where(activation > 0.0, activation, LEAKY_SLOPE * activation)
    return inputs, activation


def softmax_cross_entropy(logits: FloatArray, labels: IntArray) -> tuple[float, FloatArray]:
    """Return the mean cross-entropy loss and the softmax probabilities.

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
    layers: list[Layer], inputs: Sequence[FloatArray], probs: FloatArray, labels: IntArray, lr: float
) -> None:
    """Backpropagate the cross-entropy gradient and update ``layers`` in place."""
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
    """Return the loss and accuracy of the model on ``x``."""
    _, logits = forward(layers, x)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, accuracy(logits, y)


def train(config: RunConfig, log: LogFn) -> RunResult:
    """Train one MLP with minibatch SGD and report metrics through ``log(metrics, step)``.

    ``step`` counts SGD updates, starting at 1. Every ``config.steps_per_log`` steps, at
    the end of every epoch and at the first step whose loss is not finite, ``log``
    receives ``train/loss`` and ``train/acc`` (means over the minibatches since the
    previous call), ``lr`` and ``epoch``. The end-of-epoch call also carries ``val/loss``
    and ``val/acc``. Non-finite losses are passed on as they are, and training continues
    after divergence until the last epoch.
    """
    started = time.perf_counter()
    data = load_dataset()
    rng = np.random.default_rng(config.seed)
    n_classes = int(data.y_train.max()) + 1
    sizes = [data.x_train.shape[1], *config.hidden_sizes, n_classes]
    layers = init_layers(sizes, rng)

    step = 0
    first_inf_step: int | None = None
    first_nan_step: int | None = None
    window_losses: list[float] = []
    window_accs: list[float] = []
    epoch_losses: list[float] = []
    previous_loss_finite = True
    val_acc = math.nan
    n_train = len(data.y_train)

    # Overflow to inf and the NaN that follows are the point of the high-lr runs, so
    # NumPy's warnings about them are silenced. The arithmetic itself is unchanged.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(n_train)
            epoch_losses.clear()
            for start in range(0, n_train, config.batch_size):
                batch = order[start : start + config.batch_size]
                x_batch = data.x_train[batch]
                y_batch = data.y_train[batch]
                inputs, logits = forward(layers, x_batch)
                loss, probs = softmax_cross_entropy(logits, y_batch)
                sgd_step(layers, inputs, probs, y_batch, config.lr)
                step += 1

                if first_nan_step is None and math.isnan(loss):
                    first_nan_step = step
                if first_inf_step is None and math.isinf(loss):
                    first_inf_step = step
                window_losses.append(loss)
                window_accs.append(accuracy(logits, y_batch))
                epoch_losses.append(loss)

                # The window ends early at the step where the loss stops being finite, so
                # the logged curve shows the exact step of divergence.
                starts_diverging = previous_loss_finite and not math.isfinite(loss)
                previous_loss_finite = math.isfinite(loss)
                end_of_epoch = start + config.batch_size >= n_train
                if step % config.steps_per_log != 0 and not end_of_epoch and not starts_diverging:
                    continue
                metrics: dict[str, MetricValue] = {
                    "train/loss": float(np.mean(window_losses)),
                    "train/acc": float(np.mean(window_accs)),
                    "lr": config.lr,
                    "epoch": epoch,
                }
                window_losses.clear()
                window_accs.clear()
                if end_of_epoch:
                    val_loss, val_acc = evaluate(layers, data.x_val, data.y_val)
                    metrics["val/loss"] = val_loss
                    metrics["val/acc"] = val_acc
                log(metrics, step)

    return RunResult(
        name=config.name,
        final_train_loss=float(np.mean(epoch_losses)),
        final_val_acc=val_acc,
        first_inf_step=first_inf_step,
        first_nan_step=first_nan_step,
        steps=step,
        seconds=time.perf_counter() - started,
    )


def limit_blas_threads() -> None:
    """Keep each worker's BLAS to one thread, since the runs already fill the CPUs."""
    threadpool_limits(limits=1)


def run_tracked(
    config: RunConfig, project: str, server: str | None, api_key: str | None
) -> RunResult:
    """Train one configuration inside an assay run. This is the worker of the sweep."""
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
        return train(config, lambda metrics, step: run.log(dict(metrics), step=step))


def format_result(result: RunResult) -> str:
    if result.diverged:
        outcome = f"diverged (first inf at step {result.first_inf_step}, "
        outcome += f"first NaN at step {result.first_nan_step})"
    else:
        outcome = "did not diverge"
    return (
        f"{result.name:<14} train loss {result.final_train_loss:<9.4g} "
        f"val acc {result.final_val_acc:<6.3f} {result.steps:>5} steps "
        f"{result.seconds:5.1f} s  {outcome}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run a learning rate x batch size sweep of a NumPy MLP on the digits "
        "data, logging every run to an assay server.",
    )
    parser.add_argument(
        "--project", default=DEFAULT_PROJECT, help="assay project (default: %(default)s)"
    )
    parser.add_argument(
        "--server", default=None, help="assay server URL (default: $ASSAY_SERVER)"
    )
    parser.add_argument("--api-key", default=None, help="API key (default: $ASSAY_API_KEY)")
    parser.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=list(DEFAULT_LEARNING_RATES),
        help="learning rates of the grid (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_BATCH_SIZES),
        help="batch sizes of the grid (default: %(default)s)",
    )
    parser.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_HIDDEN_SIZES),
        help="widths of the hidden layers (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs per run (default: %(default)s)"
    )
    parser.add_argument(
        "--steps-per-log",
        type=int,
        default=DEFAULT_STEPS_PER_LOG,
        help="SGD steps between two logged training points; every epoch end is logged too "
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
        default=None,
        help="number of worker processes (default: one per run, so all runs stream at once)",
    )
    args = parser.parse_args(argv)
    positive = {
        "--lrs": args.lrs,
        "--batch-sizes": args.batch_sizes,
        "--hidden-sizes": args.hidden_sizes,
        "--epochs": [args.epochs],
        "--steps-per-log": [args.steps_per_log],
        "--workers": [] if args.workers is None else [args.workers],
    }
    for option, values in positive.items():
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
            except Exception as error:  # noqa: BLE001 - report each failed run, keep the rest
                failures += 1
                print(f"{config.name:<14} failed: {type(error).__name__}: {error}", file=sys.stderr)
                continue
            print(format_result(result), flush=True)

    elapsed = time.perf_counter() - started
    print(f"Finished {len(configs) - failures} of {len(configs)} runs in {elapsed:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
