"""What accelerators TensorFlow sees, and how it should use them.

Run as `python -m training.devices` to print the visible GPUs as JSON: the worker's parent
process uses that to log its GPUs without importing TensorFlow itself.
"""

import json


def configure_gpus() -> list[str]:
    """Let TensorFlow grow GPU memory as needed instead of taking it all; return the GPU names.

    Must run before TensorFlow touches a GPU, i.e. first thing in the process that trains.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [gpu.name for gpu in gpus]


if __name__ == "__main__":
    print(json.dumps({"gpus": configure_gpus()}))
