"""Face recognisers (``base.Recognizer``): dlib's ResNet from its wheel, or insightface's ArcFace (the user's)."""
