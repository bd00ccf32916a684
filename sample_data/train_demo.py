"""Train a small Keras LSTM for one epoch on an lstmshape output and print the loss.

    python sample_data/train_demo.py demo_out/batches.h5

The last step of ``make demo``: whatever the pipeline wrote (``.npy``/``.npz``/``.h5``, batched or
not) goes to Keras through ``lstmshape.tf.dataset``, which reads it through its manifest. The
model's ``input_shape`` and ``Masking`` value come from the output itself. Targets are the
output's ``y`` (from ``lstmshape window --target``); an output without them trains on a
stand-in target, each sequence's mean, so that any output can be tried.

The last line printed is ``loss <value>``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import lstmshape.tf
from lstmshape.io.source import open_source
from lstmshape.tf import import_tensorflow

EPOCHS = 1
UNITS = 8
BATCH_SIZE = 32
SEED = 0


def build_model(keras: Any, input_shape: list[int | None], pad_value: float | None,
                outputs: int) -> Any:
    layers: list[Any] = [keras.Input(shape=tuple(input_shape))]
    if pad_value is not None:
        # NaN padding is replaced by 0 in the dataset (NaN never equals a mask value)
        layers.append(keras.layers.Masking(mask_value=0.0 if math.isnan(pad_value)
                                           else pad_value))
    layers += [keras.layers.LSTM(UNITS), keras.layers.Dense(outputs)]
    return keras.Sequential(layers)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    path = argv[1]
    with open_source(path) as output:  # the reader every lstmshape command uses
        input_shape = [output.timesteps, output.n_features]
        pad_value, target_shape = output.pad_value, output.target_shape
        batched = bool(output.batches)
        stateful = output.manifest is not None and bool(output.manifest.params.get("stateful"))
    tf, keras = import_tensorflow(quiet=True)  # no TensorFlow start-up noise in make's log
    keras.utils.set_random_seed(SEED)
    data = lstmshape.tf.dataset(path, batch_size=None if batched else BATCH_SIZE,
                                shuffle=not stateful, seed=SEED, dtype="float32")
    if pad_value is not None and math.isnan(pad_value):
        def no_nan(x: Any, *rest: Any) -> Any:
            x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
            return (x, *rest) if rest else x

        data = data.map(no_nan)
    if target_shape is None:
        data = data.map(lambda x: (x, tf.reduce_mean(x, axis=[1, 2])[:, None]))
        outputs = 1
    else:
        outputs = math.prod(target_shape) or 1
        data = data.map(lambda x, y: (x, tf.reshape(tf.cast(y, "float32"), (-1, outputs))))
    model = build_model(keras, input_shape, pad_value, outputs)
    model.compile(optimizer="adam", loss="mse")
    # the dataset shuffles itself; fit(shuffle=True), the default, would only warn
    history = model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False)
    loss = float(history.history["loss"][-1])
    target = "y" if target_shape is not None else "each sequence's mean (no y in this output)"
    print(f"trained LSTM({UNITS}) for {EPOCHS} epoch on {path}: input_shape="
          f"{tuple(input_shape)}, target {target}")
    print(f"loss {loss:.6f}")
    return 0 if math.isfinite(loss) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
