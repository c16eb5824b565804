"""The hand-built backpropagation compute graph and the course's small network."""
