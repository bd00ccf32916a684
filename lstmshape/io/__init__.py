"""Reading and writing ``.npy``, ``.npz`` and ``.h5``: the only code that touches files."""
