"""An automatic judge of a poem's theme that does not count the markers twice.

A logistic regression over the characters of a poem, trained on the human training poems with the theme's marker
characters removed: it must recognise a 月 poem by 夜, 光, 霜, 明, ..., never by 月 itself. Its held-out accuracy on
the test split says how far to trust it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from poetry_vae.generation.steering import Theme


def without_markers(text: str, markers: str) -> str:
    return "".join(char for char in text if char not in markers)


@dataclass
class ThemeJudge:
    theme: Theme
    vectorizer: CountVectorizer
    classifier: LogisticRegression

    @classmethod
    def fit(cls, theme: Theme, texts: Sequence[str], c: float = 0.5) -> ThemeJudge:
        """Trained on ``texts`` (human poems): a poem is themed when it carries a marker; the markers are removed
        before it is read. Balanced classes, so a theme in 1 poem of 10 is not judged by the base rate alone."""
        labels = np.array([theme.marks(text) for text in texts])
        if labels.all() or not labels.any():
            raise ValueError(f"theme {theme.name}: the training poems must include some with and some without it")
        vectorizer = CountVectorizer(analyzer="char", binary=True, lowercase=False)
        features = vectorizer.fit_transform([without_markers(text, theme.markers) for text in texts])
        classifier = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        classifier.fit(features, labels)
        return cls(theme, vectorizer, classifier)

    def judge(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) bool: the poems the judge takes to be on the theme (markers removed first, as in training)."""
        features = self.vectorizer.transform([without_markers(text, self.theme.markers) for text in texts])
        return self.classifier.predict(features).astype(bool)

    def accuracy(self, texts: Sequence[str]) -> dict[str, float]:
        """Held-out accuracy against the marker labels: overall, and balanced (the mean of the two recalls)."""
        labels = np.array([self.theme.marks(text) for text in texts])
        said = self.judge(texts)
        recalls = [float((said[labels == value] == value).mean()) for value in (True, False) if (labels == value).any()]
        return {"accuracy": float((said == labels).mean()), "balanced_accuracy": float(np.mean(recalls)),
                "themed_share": float(labels.mean())}
