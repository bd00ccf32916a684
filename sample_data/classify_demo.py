"""Train a small Keras LSTM classifier on a labelled training set; report validation and test
accuracy.

    python sample_data/classify_demo.py demo_out/train.npy demo_out/val.npy demo_out/test.npy

The end of ``make demo``'s labelled pipeline: raw recordings and their classes were split by
``lstmshape partition --stratify``, padded and scaled on the training set, and the validation and
test sets shaped ``--like`` it. Each output goes to Keras through ``lstmshape.tf.dataset`` as
``(x, y)``, its ``y`` the class of each recording, carried by every step. The model's
``input_shape`` and ``Masking`` value come from the training output's manifest.

The last line printed is ``accuracy val <a> test <b>``.
"""

from __future__ import annotations

import sys
from typing import Any

import lstmshape.tf
from lstmshape.io.source import open_source
from lstmshape.tf import import_tensorflow

EPOCHS = 30
UNITS = 16
BATCH_SIZE = 16
SEED = 0


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    train, val, test = argv[1:]
    with open_source(train) as output:  # the reader every lstmshape command uses
        input_shape = (output.timesteps, output.n_features)
        pad_value = output.pad_value
    _, keras = import_tensorflow(quiet=True)
    keras.utils.set_random_seed(SEED)

    def data(path: str, shuffle: bool = False) -> Any:
        return lstmshape.tf.dataset(path, batch_size=BATCH_SIZE, shuffle=shuffle, seed=SEED,
                                    dtype="float32")

    model = keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Masking(mask_value=0.0 if pad_value is None else pad_value),
        keras.layers.LSTM(UNITS),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(data(train, shuffle=True), validation_data=data(val), epochs=EPOCHS, verbose=0,
              shuffle=False)  # the dataset shuffles itself
    scores = {name: model.evaluate(data(path), verbose=0)[1]
              for name, path in (("val", val), ("test", test))}
    print(f"trained LSTM({UNITS}) classifier for {EPOCHS} epochs on {train}: "
          f"input_shape={input_shape}")
    print(f"accuracy val {scores['val']:.3f} test {scores['test']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
