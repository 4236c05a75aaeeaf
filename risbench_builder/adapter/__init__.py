"""PA-SAM style prompt adapter for box-prompted SAM: model, training data, box noise, training,
evaluation and the adapter file format (PA-SAM, arXiv 2401.13051; code: xzz2/pa-sam).

Submodules import only what they need: ``model`` and ``losses`` need torch and
segment-anything alone, so a bare GPU machine can run them without the rest of the package.
"""
