"""Face recognisers (``base.Recognizer``): dlib's ResNet from its wheel, or insightface's ArcFace where the user has it."""
