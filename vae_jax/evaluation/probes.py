"""Linear probes: how well a logistic regression on the posterior means predicts labels that
the model never saw (the 40 CelebA attributes; the class of MNIST, CIFAR-10 and other labelled
datasets)."""

from __future__ import annotations

import numpy as np


def attribute_probe_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
) -> np.ndarray:
    """Test accuracy [A] of one logistic regression per binary attribute on mean codes [N, k]."""
    # Imported here: scikit-learn takes a second to import, which training never needs.
    from sklearn.linear_model import LogisticRegression

    scale = train_codes.std(0) + 1e-8
    accuracies = []
    for a in range(train_labels.shape[1]):
        if len(np.unique(train_labels[:, a])) < 2:
            accuracies.append(float(np.mean(test_labels[:, a] == train_labels[0, a])))
            continue
        probe = LogisticRegression(max_iter=500).fit(train_codes / scale, train_labels[:, a])
        accuracies.append(probe.score(test_codes / scale, test_labels[:, a]))
    return np.asarray(accuracies)


def attribute_metrics(
    train_codes: np.ndarray,
    train_attributes: np.ndarray,
    test_codes: np.ndarray,
    test_attributes: np.ndarray,
) -> dict:
    """Probe accuracies (mean and per attribute) fitted on train codes [N, k] / attributes
    [N, A] and scored on the test ones, beside the majority-class baseline."""
    accuracy = attribute_probe_accuracy(train_codes, train_attributes, test_codes, test_attributes)
    majority = np.maximum(test_attributes.mean(0), 1 - test_attributes.mean(0))
    return {
        "attribute_probe_accuracy": float(accuracy.mean()),
        "attribute_probe_accuracy_per_attribute": accuracy.tolist(),
        "attribute_majority_baseline": float(majority.mean()),
    }


def label_metrics(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
) -> dict:
    """Test accuracy of one multinomial logistic regression from mean codes [N, k] to class
    labels [N], fitted on the train codes, beside the majority-class baseline. Train labels of
    one class (a handful of codes) predict that class."""
    from sklearn.linear_model import LogisticRegression  # see attribute_probe_accuracy

    if len(np.unique(train_labels)) < 2:
        accuracy = float(np.mean(test_labels == train_labels[0]))
    else:
        scale = train_codes.std(0) + 1e-8
        probe = LogisticRegression(max_iter=1000).fit(train_codes / scale, train_labels)
        accuracy = float(probe.score(test_codes / scale, test_labels))
    counts = np.bincount(test_labels)
    return {
        "label_probe_accuracy": accuracy,
        "label_majority_baseline": float(counts.max() / counts.sum()),
    }
