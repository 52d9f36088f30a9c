"""Character language model: vocabulary, corpus pipeline, model and training."""
