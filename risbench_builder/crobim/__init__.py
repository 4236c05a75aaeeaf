"""CroBIM reference trainer (Dong et al., arXiv 2410.08613), implemented from the paper.

No official CroBIM code is public; modules follow the paper's Section IV and, where it is
silent, RMSIN / LAVT (Lsan2401/RMSIN, yz93/LAVT-RIS). ``model/`` holds one nn.Module per file,
``data.py`` reads our hf / refer / native exports, ``train.py`` trains, ``smoke.py`` runs the
smoke validation, ``evaluate.py`` scores a checkpoint with the reference protocol (``metrics.py``).
Importing this package does not import torch; its submodules do.
"""
