"""Class-conditional sample quality: does a sample belong to the class asked for, and does a class's
samples cover all of that class?

- Adherence: a k-NN classifier fit on real labeled points (k = 15, scikit-learn) labels each sample;
  adherence is the share labeled as the class that was asked for.
- Class mix: the mean of the classifier's class probabilities over the samples. Where classes overlap,
  hard labels go to the locally commoner class and skew the mix; averaged probabilities do not (on real
  data they reproduce the label shares).
- Precision / recall (Kynkaenniemi et al. 2019, eq. 1-2) and coverage (Naeem et al. 2020, eq. 4), from
  k-nearest-neighbour balls (k = 5): precision = share of samples inside the real points' balls; recall =
  share of real points inside the samples' balls; coverage = share of real points whose own ball holds
  a sample. Recall and coverage fall when samples collapse onto part of the class.
"""

from __future__ import annotations

import numpy as np
import torch

from .points import energy_distance


def _knn(x: np.ndarray, k: int):
    """A k-NN index of x and the distance from each point of x to its k-th nearest other point."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1).fit(x)
    return index, index.kneighbors(x)[0][:, k]


def _in_any_ball(queries: np.ndarray, centers: np.ndarray, radii: np.ndarray, block: int = 4096) -> np.ndarray:
    """bool [len(queries)]: query i lies within radii[j] of some centers[j]."""
    c = torch.as_tensor(centers, dtype=torch.float64)
    r = torch.as_tensor(radii, dtype=torch.float64)
    q = torch.as_tensor(queries, dtype=torch.float64)
    return torch.cat([(torch.cdist(q[i:i + block], c) <= r).any(1) for i in range(0, len(q), block)]).numpy()


def precision_recall_coverage(samples, real, k: int = 5) -> dict[str, float]:
    samples, real = np.asarray(samples, np.float64), np.asarray(real, np.float64)
    real_r = _knn(real, k)[1]
    sample_index, sample_r = _knn(samples, k)
    nearest_sample = sample_index.kneighbors(real, n_neighbors=1)[0][:, 0]
    return {"precision": float(_in_any_ball(samples, real, real_r).mean()),
            "recall": float(_in_any_ball(real, samples, sample_r).mean()),
            "coverage": float((nearest_sample <= real_r).mean())}


class ClassJudge:
    """A k-NN classifier of real labeled points that scores which class samples look like."""

    def __init__(self, x, y, k: int = 15):
        from sklearn.neighbors import KNeighborsClassifier

        self.x, self.y = np.asarray(x, np.float64), np.asarray(y, np.int64)
        self.num_classes = int(self.y.max()) + 1
        self.model = KNeighborsClassifier(n_neighbors=k).fit(self.x, self.y)

    def predict(self, samples) -> np.ndarray:
        return self.model.predict(np.asarray(samples, np.float64))

    def accuracy(self, x, y) -> float:
        """Share of labeled points (e.g. fresh real data) it classifies right: the ceiling adherence is read against."""
        return float((self.predict(x) == np.asarray(y)).mean())

    def class_mix(self, samples) -> np.ndarray:
        """Estimated share of each class among samples, float [num_classes] (mean class probability)."""
        proba = self.model.predict_proba(np.asarray(samples, np.float64))
        mix = np.zeros(self.num_classes)
        mix[self.model.classes_] = proba.mean(0)
        return mix

    def score_class(self, samples, c: int, k: int = 5) -> dict[str, float]:
        """Adherence of samples drawn for class c, their precision / recall / coverage and energy distance
        against the real points of class c (a random subset the size of samples, if there are more)."""
        real = self.x[self.y == c]
        if len(real) > len(samples):  # as many real points as samples: recall / coverage depend on both counts
            real = real[np.random.default_rng(c).choice(len(real), len(samples), replace=False)]
        return {"adherence": float((self.predict(samples) == c).mean()),
                **precision_recall_coverage(samples, real, k), "energy": energy_distance(samples, real)}
