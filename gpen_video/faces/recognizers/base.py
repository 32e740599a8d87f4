"""One interface for every face recogniser: an embedding per face, and the model's own distance and threshold.

The identity guard (is the restored face still the source's person?) and face selection (``--reference-face``,
``--exclude-face``) ask only this. Each model keeps its own measure: dlib's 128-D ResNet is trained for L2
distance with 0.6 as "the same person"; ArcFace for cosine. Nothing converts one into the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Recognizer(ABC):
    """Embeds faces given by their five landmarks (``faces.types.LANDMARK_NAMES`` order, image pixels)."""

    name: str = "recognizer"
    #: the model's distance at or under which two faces are taken as the same person
    threshold: float = 0.6

    @abstractmethod
    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(N, D) float32 embeddings of the N faces at ``landmarks`` (N, 5, 2) in BGR uint8 ``image``.

        The recogniser aligns each face its own way from the five points; the caller never crops for it.
        """

    @abstractmethod
    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) distances between two sets of embeddings, in the model's own measure."""
