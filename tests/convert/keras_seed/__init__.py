"""The seed's own Keras CNN, built and trained in a child process on a chosen Keras backend."""
