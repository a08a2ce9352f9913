"""The ``ssl export`` and ``ssl predict`` stages: TorchScript/ONNX models and localizing
sources in audio files."""
