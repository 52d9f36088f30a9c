"""Row-sequence MNIST: data, the classifier, and the regression benchmark."""
