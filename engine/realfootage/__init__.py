"""The real-footage front end: a person detector and per-person BlazePose landmarks, both real-trained models
converted to ONNX from registry packages (see ``assets/models/realfootage/NOTICE``)."""
