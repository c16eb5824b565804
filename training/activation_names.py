"""Names of the hidden-layer activations, importable without TensorFlow (the API validates them)."""

# Element-wise Keras activations that keep a layer's shape; softmax-like ones belong on outputs.
KERAS_HIDDEN_ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "mish", "relu", "relu6",
    "selu", "sigmoid", "silu", "soft_shrink", "softplus", "softsign", "sparse_plus",
    "squareplus", "swish", "tanh", "tanh_shrink",
)  # fmt: skip
# "lecun" is LeCun's scaled tanh, 1.7159 tanh(2x/3) + 0.01x.
HIDDEN_ACTIVATIONS = ("lecun", *KERAS_HIDDEN_ACTIVATIONS)
